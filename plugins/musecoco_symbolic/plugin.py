"""Hook implementations of the `musecoco_symbolic` plugin (registered through the `vidmusic` entry-point group).

Nothing is registered yet: this plugin's components are built in a later issue.
"""
