"""vidmusic built-in plugin `inspire_llm`."""
