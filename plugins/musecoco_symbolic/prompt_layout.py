"""Layout ``musecoco_prompt``: upstream MuseCoco's own sequence, ``</s> [attributes] <sep> [music]``.

A fairseq language model starts every sequence with ``</s>`` (its BOS); MuseCoco's attribute-to-music model
(microsoft/muzic ``musecoco/2-attribute2music_model``, ``linear_decoder/controlled_language_modeling``) then
reads the 63 attribute tokens, ``<sep>`` and the music. This layout's prefix is that one ``</s>`` position,
embedded by the backbone itself (no parameters of its own), so an imported checkpoint sees exactly upstream's
input; the attributes are the codec's prefix columns, set by ``generate.attributes`` (``remi`` codec,
``vocab: musecoco``). No video reaches the LM: an importer pairs it with the ``none`` encoder, and the video
only sets the length. For video conditioning train the ``attribute_head`` or ``prefix`` layout from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from vidmusic_core import Condition, PrefixConfig, PrefixLayout

from .vocab import EOS


@dataclass
class MusecocoPromptConfig(PrefixConfig):
    """``layout.*`` options of ``musecoco_prompt``: none of its own (the ``prefix`` wiring is filled by the
    model builder; ``text_only`` is always on: no video or text path)."""

    text_only: bool = True
    use_text: bool = False
    use_time: bool = False


class MusecocoPromptLayout(PrefixLayout):
    """Prefix = the backbone's ``</s>`` embedding ``[B, 1, D]``; music (attributes, ``<sep>``, REMI) after it."""

    Config = MusecocoPromptConfig

    def __init__(self, cfg: Optional[MusecocoPromptConfig] = None) -> None:
        cfg = cfg or MusecocoPromptConfig()
        super().__init__(MusecocoPromptConfig(**{**cfg.__dict__, "text_only": True, "use_text": False,
                                                 "use_time": False, "prefix_condition": False, "aligned": False,
                                                 "own_specials": False}))

    def prefix(self, backbone, condition: Condition, text: Sequence[str] | None = None,  # type: ignore[override]
               seconds: Tensor | None = None, cfg_null: bool = False) -> tuple[Tensor, Tensor]:
        B, dev = condition.batch_size, condition.tokens.device
        bos = backbone.embed(torch.full((B, 1, 1), EOS, dtype=torch.long, device=dev))  # [B, 1, D]
        return bos, torch.ones(B, 1, dtype=torch.bool, device=dev)
