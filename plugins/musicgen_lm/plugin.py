"""Hook implementations of the `musicgen_lm` plugin (registered through the `vidmusic` entry-point group).

Nothing is registered yet: this plugin's components are built in a later issue.
"""
