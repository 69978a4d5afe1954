"""Example third-party vidmusic plugin."""
