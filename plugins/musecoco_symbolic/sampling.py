"""Upstream-style attribute-to-music sampling with the ``musecoco`` backbone (no video, no layout).

The prompt is fairseq's: ``</s>`` (the BOS of a fairseq LM), the 63 attribute tokens, ``<sep>``; music
tokens are then drawn one at a time with top-k sampling (upstream: k 15, temperature 1.0, at least
512 and at most 2560 new tokens) until ``</s>``. The backbone's running attention state makes each
step O(1) in time and memory. ``<s> <pad> <unk> <sep>`` and attribute tokens are never drawn; ``</s>``
not before ``min_tokens``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch

from vidmusic_core import BackboneInput

from .attributes import values_to_tokens
from .vocab import EOS, PAD


def prompt_ids(vocab: Any, attributes: Union[Mapping[str, Any], Sequence[str]]) -> list[int]:
    """``[</s>] + attribute tokens + [<sep>]`` ids; ``attributes``: values (missing keys NA) or tokens."""
    tokens = list(attributes) if not isinstance(attributes, Mapping) else values_to_tokens(attributes)
    return [EOS] + vocab.encode(tokens) + [vocab.sep]


@torch.inference_mode()
def generate_from_attributes(backbone: Any, attributes: Sequence[Union[Mapping[str, Any], Sequence[str]]],
                             max_tokens: int = 2560, min_tokens: int = 0, top_k: int = 15, temperature: float = 1.0,
                             seeds: Optional[Sequence[int]] = None) -> list[list[int]]:
    """Music token ids per item (after ``<sep>``, without ``</s>``). One ``torch.Generator`` per row."""
    vocab = backbone.vocab
    rows = [prompt_ids(vocab, a) for a in attributes]
    B, P = len(rows), max(len(r) for r in rows)
    dev = backbone.decoder.embed_tokens.weight.device
    ids = torch.full((B, 1, P), PAD, dtype=torch.long, device=dev)
    mask = torch.zeros(B, P, dtype=torch.bool, device=dev)
    for b, r in enumerate(rows):  # left-padded, so every row's <sep> is the last prompt token
        ids[b, 0, P - len(r):] = torch.tensor(r, device=dev)
        mask[b, P - len(r):] = True
    pos = (torch.arange(P, device=dev) - (P - 1))[None].expand(B, P)  # [B, P] position from <sep>
    gens = [torch.Generator(device=dev).manual_seed(int(s)) for s in (seeds or range(B))]
    column = backbone.prefix_length  # the first music column: no attribute tokens, no <sep>
    cache = backbone.new_cache()
    out = backbone(BackboneInput(backbone.embed(ids), mask, position_ids=pos), cache, logits_positions="last")
    logits = out.logits[:, 0, -1]  # [B, V]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    music: list[list[int]] = [[] for _ in range(B)]
    for step in range(max_tokens):
        logits = backbone.constrain_logits(logits[:, None], column)[:, 0]
        if step < min_tokens:
            logits[:, EOS] = float("-inf")
        if top_k and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = (logits.float() / max(temperature, 1e-6)).softmax(-1)
        nxt = torch.stack([torch.multinomial(probs[b], 1, generator=gens[b])[0] for b in range(B)])  # [B]
        for b in range(B):
            if not bool(done[b]):
                if int(nxt[b]) == EOS:
                    done[b] = True
                else:
                    music[b].append(int(nxt[b]))
        if bool(done.all()) or step == max_tokens - 1:
            break
        step_pos = (pos[:, -1:] + step + 1)
        inp = BackboneInput(backbone.embed(nxt[:, None, None]), torch.ones(B, 1, dtype=torch.bool, device=dev),
                            position_ids=step_pos)
        logits = backbone(inp, cache, logits_positions="last").logits[:, 0, -1]
    return music

