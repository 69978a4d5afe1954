"""Text tokenizers of the `inspire` backbone.

- :class:`ByteTokenizer`: the embedded default (no files): UTF-8 bytes, ids 0..255, vocabulary 256.
- :class:`QwenTokenizer`: the Qwen tokenizer of a local InspireMusic / Qwen model directory
  (``transformers.AutoTokenizer``, ``local_files_only=True``), with the special tokens InspireMusic
  adds (mirrors upstream ``inspiremusic/text/tokenizer.py`` ``QwenTokenizer``: same tokens, same order,
  so the ids agree with a checkpoint trained upstream). ``encode`` is the plain ``input_ids`` of the
  caption, no BOS/EOS, as upstream's ``text2tokens``.

Both expose ``vocab_size`` (the number of ids ``encode`` can return) and ``encode(text) -> list[int]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from vidmusic_core import ConfigError

#: special tokens InspireMusic adds to the Qwen tokenizer (upstream text/tokenizer.py, in order)
INSPIRE_SPECIAL_TOKENS = {
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|endofprompt|>", "[breath]", "<strong>", "</strong>", "[noise]",
        "[laughter]", "[cough]", "[clucking]", "[accent]", "[quick_breath]",
    ],
}


class TextTokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...


class ByteTokenizer:
    """UTF-8 bytes as ids (0..255). Needs no files; the tiny default's ``text_vocab`` is 256."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class QwenTokenizer:
    """The Qwen tokenizer from a local directory plus InspireMusic's special tokens."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError variants
            raise ConfigError(
                f"backbone.qwen_dir={str(path)!r}: cannot load a Qwen tokenizer from it ({exc}). It needs the "
                "tokenizer files of the model directory (tokenizer.json or vocab.json + merges.txt, "
                "tokenizer_config.json)."
            ) from exc
        self.tok.add_special_tokens(INSPIRE_SPECIAL_TOKENS)
        self.vocab_size = len(self.tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


def has_tokenizer_files(path: str | Path) -> bool:
    """Whether ``path`` holds the files a Qwen tokenizer loads from."""
    p = Path(path)
    return (p / "tokenizer.json").is_file() or ((p / "vocab.json").is_file() and (p / "merges.txt").is_file())


def load_tokenizer(qwen_dir: str | Path | None) -> TextTokenizer:
    """The Qwen tokenizer of ``qwen_dir`` when it has tokenizer files, else :class:`ByteTokenizer`."""
    if qwen_dir is not None and has_tokenizer_files(qwen_dir):
        return QwenTokenizer(qwen_dir)
    return ByteTokenizer()
