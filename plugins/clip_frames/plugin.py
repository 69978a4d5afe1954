"""Hook implementations of the `clip_frames` plugin (registered through the `vidmusic` entry-point group).

Nothing is registered yet: this plugin's components are built in a later issue.
"""
