"""Built-in visualizers (music -> video): ``reactive``."""
