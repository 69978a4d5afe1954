"""vidmusic built-in plugin `vidmuse_lstv`."""
