"""vidmusic built-in plugin `clip_frames`."""
