"""KV cache of the `inspire` backbone: a transformers ``DynamicCache`` written in place.

``InspireCache`` is a ``DynamicCache`` (every transformers cache method works on it) whose layers keep their
keys / values at the front of a preallocated buffer ``[B, H_kv, capacity, head_dim]``: a decode step copies
only its new position into the buffer (``DynamicLayer`` re-copies the whole past with ``torch.cat``, O(past)
per step and layer), and ``keys`` / ``values`` are views of the first ``seq_length`` positions. The buffer
grows by half its size (amortised O(1) per token), capped at the model's ``context_length`` when that is known.
Under autograd (a cache fed tensors that require grad) a layer falls back to ``torch.cat``, so nothing an
autograd graph saved is ever overwritten.

``InspireCache.mask`` also remembers the padding mask of the cached positions (see the class).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from transformers import DynamicCache, Qwen2Config
from transformers.cache_utils import DynamicLayer

#: smallest buffer a layer allocates (positions)
MIN_CAPACITY = 256


class InPlaceLayer(DynamicLayer):
    """``DynamicLayer`` whose ``update`` writes into a preallocated buffer instead of concatenating.

    ``keys`` / ``values`` are views ``[B, H, n, hd]`` of ``_kbuf`` / ``_vbuf`` ``[B, H, capacity, hd]``. Any
    inherited operation that replaces them (``crop`` keeps a view; ``reorder_cache``, ``batch_select_indices``,
    ``batch_repeat_interleave``, ``offload`` make new tensors) is picked up by :meth:`_adopt` on the next
    ``update``, which copies the current keys / values into a fresh buffer when they are not its prefix.
    """

    def __init__(self, max_capacity: Optional[int] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_capacity = max_capacity
        self._kbuf: Optional[Tensor] = None
        self._vbuf: Optional[Tensor] = None
        self._views: Optional[tuple[Tensor, Tensor]] = None  # the keys / values this layer last set

    def _is_prefix(self, t: Tensor, buf: Optional[Tensor]) -> bool:
        return (buf is not None and t.dim() == 4 and t.data_ptr() == buf.data_ptr() and t.stride() == buf.stride()
                and t.shape[:2] == buf.shape[:2] and t.shape[3] == buf.shape[3] and t.dtype == buf.dtype
                and t.device == buf.device)

    def _capacity(self, need: int) -> int:
        cap = max(MIN_CAPACITY, need + need // 2)
        if self.max_capacity is not None and need <= self.max_capacity:
            cap = min(cap, self.max_capacity)
        return cap

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled() and (key_states.requires_grad or value_states.requires_grad):
            self._kbuf = self._vbuf = self._views = None  # autograd: the plain concatenating layer
            return super().update(key_states, value_states, *args, **kwargs)
        views, kb, vb = self._views, self._kbuf, self._vbuf
        ks, vs = key_states.shape, value_states.shape
        s = ks[2]
        if (views is not None and views[0] is self.keys and views[1] is self.values
                and views[0].shape[2] + s <= kb.shape[2] and ks[:2] == kb.shape[:2] and ks[3] == kb.shape[3]
                and vs[:3] == ks[:3] and vs[3] == vb.shape[3] and key_states.dtype == kb.dtype
                and value_states.dtype == kb.dtype and key_states.device == kb.device == value_states.device):
            # the common decode case, checked in O(1): keys / values are still the views this layer set (nothing
            # replaced them), so they are its buffers' prefix, and the new states fit them exactly (copy_ would
            # broadcast or cast a mismatch silently, hence the shape / dtype / device checks)
            n = views[0].shape[2]
        else:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = self.get_seq_length()
            B, H, _, hd = ks
            fits = (n == 0 or (self._is_prefix(self.keys, kb) and self._is_prefix(self.values, vb)))
            if not (fits and kb is not None and kb.shape[0] == B and kb.shape[1] == H and kb.shape[3] == hd
                    and vb.shape[3] == vs[3] and kb.dtype == key_states.dtype
                    and kb.device == key_states.device and n + s <= kb.shape[2]):
                cap = self._capacity(n + s)
                kb = key_states.new_empty(B, H, cap, hd)
                vb = value_states.new_empty(B, vs[1], cap, vs[3])
                if n:
                    kb[:, :, :n].copy_(self.keys)
                    vb[:, :, :n].copy_(self.values)
                self._kbuf, self._vbuf = kb, vb
        kb[:, :, n:n + s].copy_(key_states)
        vb[:, :, n:n + s].copy_(value_states)
        self.keys, self.values = kb[:, :, :n + s], vb[:, :, :n + s]
        self._views = (self.keys, self.values)
        return self.keys, self.values

    def reset(self) -> None:
        super().reset()
        self._kbuf = self._vbuf = self._views = None


class InspireCache(DynamicCache):
    """transformers ``DynamicCache`` (layers written in place, see :class:`InPlaceLayer`) that also remembers
    the padding mask of the cached positions.

    ``mask``: bool ``[B, S_past]`` (True = real token), or None when nothing cached is padding. It lets
    a left-padded prompt be continued one token at a time with correct masks and position ids.
    ``max_length``: the longest sequence expected (caps a layer's buffer; None = grow freely).
    """

    def __init__(self, config: Qwen2Config, max_length: Optional[int] = None) -> None:
        super().__init__(config=config)
        self.layers = [InPlaceLayer(max_capacity=max_length) if type(layer) is DynamicLayer else layer
                       for layer in self.layers]
        self.mask: Optional[Tensor] = None

    def _trim(self) -> None:
        if self.mask is not None:
            self.mask = self.mask[:, : self.get_seq_length()]

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        self._trim()

    def reset(self) -> None:
        super().reset()
        self.mask = None

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self.mask = None if self.mask is None else self.mask[beam_idx.to(self.mask.device)]

    def batch_select_indices(self, indices: Tensor) -> None:
        super().batch_select_indices(indices)
        self.mask = None if self.mask is None else self.mask[indices.to(self.mask.device)]

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.mask = None if self.mask is None else self.mask.repeat_interleave(repeats, dim=0)
