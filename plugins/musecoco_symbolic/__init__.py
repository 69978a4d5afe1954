"""vidmusic built-in plugin `musecoco_symbolic`."""
