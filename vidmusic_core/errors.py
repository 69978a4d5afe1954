"""Exceptions raised by vidmusic. Library code raises these; only the CLI turns them into exit codes."""
from __future__ import annotations


class VidmusicError(Exception):
    """Base class of every error vidmusic raises on purpose (the CLI prints these without a traceback)."""


class PluginError(VidmusicError):
    """A plugin failed to import or its hook raised; the message names the plugin and the hook."""


class DuplicateComponentError(VidmusicError):
    """Two plugins registered the same name (or alias) for one component kind."""


class UnknownComponentError(VidmusicError, KeyError):
    """A component name that no plugin registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(VidmusicError):
    """A config that cannot be used: unknown key, wrong type, incompatible components."""


class ShapeError(VidmusicError, ValueError):
    """A tensor whose shape breaks a component contract (expected vs got, which component)."""


class CheckpointError(VidmusicError):
    """A checkpoint with missing/unexpected keys, wrong shapes, or an unreadable file."""


class BatchError(ConfigError):
    """A batch size that does not split over the ranks × micro-steps, or that the data cannot fill."""
