"""Hook implementations: one encoder and one CLI command."""
from __future__ import annotations

import click

from vidmusic_core import hookimpl


@hookimpl
def register_encoders(register):
    from .encoder import ColourStatsEncoder

    register("colour_stats", ColourStatsEncoder, ColourStatsEncoder.Config, aliases=("color_stats",))


@hookimpl
def register_commands(cli):
    @cli.command("colour-stats-info")
    def info() -> None:
        """Print what the colour_stats encoder expects."""
        from .encoder import ColourStatsEncoder

        enc = ColourStatsEncoder(ColourStatsEncoder.Config())
        click.echo(f"colour_stats: {enc.frame_spec.fps} fps, {enc.frame_spec.size}px frames, dim {enc.dim}")
