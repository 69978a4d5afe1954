"""Shipped run presets (YAML). ``default`` is always applied first."""
