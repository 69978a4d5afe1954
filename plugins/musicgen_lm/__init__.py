"""vidmusic built-in plugin `musicgen_lm`."""
