"""Hook implementations of the `musecoco_symbolic` plugin (registered through the `vidmusic` entry-point group).

- codec ``remi`` (alias ``midi``): MIDI <-> ``[MuseCoco attribute prefix] <sep> [REMI tokens]``, render
  to audio with the pretty_midi wheel's soundfont (:class:`musecoco_symbolic.codec.RemiCodec`);
- layout ``attribute_head``: a head on the video condition predicts the attribute prefix
  (:class:`musecoco_symbolic.attribute_head.AttributeHeadLayout`);
- layout ``musecoco_prompt``: upstream's own sequence ``</s> [attributes] <sep> [music]``, no video (what an
  imported checkpoint's model directory uses; :class:`musecoco_symbolic.prompt_layout.MusecocoPromptLayout`);
- backbone ``musecoco``: MuseCoco's linear-attention LM (:class:`musecoco_symbolic.backbone.MusecocoBackbone`);
- importer ``musecoco``: ``vidmusic import musecoco attribute2music.pt -o OUT``
  (:func:`musecoco_symbolic.importer.import_musecoco`);
- metric ``attribute_control``: MuseCoco's attribute-control accuracy (ASA) of generated MIDI against the
  prompt and the reference (:class:`musecoco_symbolic.metric.AttributeControlMetric`);
- metric ``bar_density``: per-bar onset density of generated MIDI against the reference and against the
  forced per-bar classes (:class:`musecoco_symbolic.metric.BarDensityMetric`).
"""
from __future__ import annotations

from vidmusic_core import Preset, hookimpl

from .attribute_head import AttributeHeadConfig, AttributeHeadLayout
from .backbone import MusecocoBackbone, MusecocoConfig
from .codec import RemiCodec, RemiConfig
from .importer import MusecocoImportConfig, import_musecoco
from .prompt_layout import MusecocoPromptConfig, MusecocoPromptLayout
from .metric import AttributeControlConfig, AttributeControlMetric, BarDensityConfig, BarDensityMetric


@hookimpl
def register_codecs(register) -> None:  # type: ignore[no-untyped-def]
    register("remi", RemiCodec, RemiConfig, aliases=("midi",))


@hookimpl
def register_layouts(register) -> None:  # type: ignore[no-untyped-def]
    register("attribute_head", AttributeHeadLayout, AttributeHeadConfig)
    register("musecoco_prompt", MusecocoPromptLayout, MusecocoPromptConfig)


@hookimpl
def register_backbones(register) -> None:  # type: ignore[no-untyped-def]
    register("musecoco", MusecocoBackbone, MusecocoConfig)


@hookimpl
def register_importers(register) -> None:  # type: ignore[no-untyped-def]
    register("musecoco", import_musecoco, MusecocoImportConfig)


@hookimpl
def register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("attribute_control", AttributeControlMetric, AttributeControlConfig)
    register("bar_density", BarDensityMetric, BarDensityConfig)


#: what `--backbone musecoco` needs in place of the embedded default's choices (the remi codec, a prefix
#: layout over 2 pooled condition tokens per second, top-k 15, MIDI metrics); anything the user sets wins
MUSECOCO_RUN = {
    "codec": {"name": "remi"},
    "data": {"toy_n": 200},  # the figures in docs/plugins/musecoco.md were measured on 200 clips
    "layout": {"name": "prefix", "reduce": "rate", "rate": 2.0, "use_text": False},
    "backbone": {"name": "musecoco", "attribute_loss": 1.0},
    "generate": {"top_k": 15, "temperature": 1.0, "cfg_coef": 1.0},
    "eval": {"metrics": ["beat_f1", "tempo_acc", "key_acc", "section_align", "attribute_control", "bar_density"]},
}


@hookimpl
def register_presets(register) -> None:  # type: ignore[no-untyped-def]
    register("musecoco", lambda: Preset(MUSECOCO_RUN, default_for="musecoco",
                                        description="the symbolic path: remi codec, prefix layout, MIDI metrics"))


@hookimpl
def register_commands(cli) -> None:  # type: ignore[no-untyped-def]
    import click

    @cli.command("corpus")
    @click.argument("out", type=click.Path(file_okay=False))
    @click.option("--collection", default="bach", show_default=True,
                  help="music21 corpus collection: bach, essenFolksong (essen), oneills1850 (oneills)")
    @click.option("--n", default=None, type=int, help="number of pieces (default: all)")
    @click.option("--seconds", default=None, type=float, help="cut every piece (MIDI and video) to this length")
    @click.option("--seed", default=0, show_default=True, help="which pieces when --n is less than all")
    @click.option("--program", default=None, type=int, help="GM program of every part (default: the collection's)")
    @click.option("--colour", type=click.Choice(["black", "key"]), default="black", show_default=True,
                  help="constant video colour; 'key' makes the video carry the measured key")
    @click.option("--no-progress", is_flag=True, help="no progress bar")
    def corpus(out: str, collection: str, n: int | None, seconds: float | None, seed: int, program: int | None,
               colour: str, no_progress: bool) -> None:
        """Export music21-corpus pieces as MIDI + constant video for symbolic-LM pretraining (offline)."""
        from .corpus import collection_info, export_corpus

        rep = export_corpus(out, collection=collection, n=n, seconds=seconds, seed=seed,
                            progress=not no_progress, program=program, colour=colour)
        click.echo(f"{len(rep.written)} written, {len(rep.existing)} kept, {len(rep.failed)} failed to parse; "
                   f"{len(rep.names)} {rep.collection} pieces in {rep.out_dir} in {rep.seconds_elapsed:.1f} s "
                   "(splits: " + ", ".join(f"{k} {len(v)}" for k, v in rep.splits.items()) + ")")
        for f in rep.failed:
            click.echo(f"  skipped {f['source']}: {f['reason']}")
        lic = collection_info(rep.collection)
        click.echo(f"licence: {lic.licence} (research: {lic.research_use}; commercial: {lic.commercial_use}); "
                   f"details in {rep.out_dir / 'dataset.json'}")
