"""``wavtokenizer`` codec: InspireMusic's WavTokenizer (75 Hz, one codebook of 4096, 24 kHz mono).

- :mod:`.encoder`: SEANet encoder + codebook (``feature_extractor.*``);
- :mod:`.decoder`: Vocos backbone with WavTokenizer's attention blocks + ISTFT head (``backbone.*``, ``head.*``);
- :mod:`.files`: reading upstream's ``config.yaml`` + Lightning checkpoint safely;
- :mod:`.codec`: :class:`WavTokenizerCodec` (registered as codec ``wavtokenizer``) and the importers;
- :mod:`.tokens`: InspireMusic's ``utt2*_token.pt`` files, read and written without unpickling objects.

See docs/codecs/wavtokenizer.md.
"""
from .codec import UPSTREAM_75HZ, WavTokenizerCodec, import_wavtokenizer, import_wavtokenizer_folder
from .tokens import read_token_file, write_token_file

__all__ = ["UPSTREAM_75HZ", "WavTokenizerCodec", "import_wavtokenizer", "import_wavtokenizer_folder",
           "read_token_file", "write_token_file"]
