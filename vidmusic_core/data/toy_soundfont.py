"""An in-tune copy of the General MIDI soundfont that ships in the pretty_midi wheel, for symusic.

symusic 0.5.x renders through prestosynth, which takes a sample's root key from the sample header
(``originalPitch``) and ignores the instrument-zone generator ``overridingRootKey`` (SF2 generator 58).
TimGM6mb.sf2 keeps most root keys in that generator (its headers say 60), so many programs (piano,
guitars, basses, violin, ...) came out transposed by whole semitones (cf. Yikai-Liao/symusic#55).
prestosynth clamps the tuning generators to +-120 cents, so ``coarseTune`` cannot compensate.

:func:`fixed_soundfont_path` writes a copy in which every zone's effective root key is written into the
header of the sample it plays. prestosynth caches a pitched copy of a sample under (sample start,
pitch) only, so two zones that share a sample but differ in root key, tuning, attenuation or loop
would get whichever was rendered first (wrong, and dependent on what was rendered before): a sample
used with several such attribute sets is duplicated (data and header), one copy per set (+4 MB).
Generator 58 is kept, so players that honour it (fluidsynth) should play the copy as the original.
The copy is cached under the system temp dir, keyed by a hash of the source file and the patch version.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path

from ..checkpoint import atomic_path
from ..errors import VidmusicError

PATCH_VERSION = 2
_SHDR = struct.Struct("<20sIIIIIBbHH")  # name, start, end, startloop, endloop, rate, pitch, correction, link, type
_GEN = struct.Struct("<HH")
_SAMPLE_ID, _ROOT_KEY = 53, 58
#: zone generators that shape what prestosynth caches per (sample start, pitch): address and loop offsets,
#: attenuation, tuning, loop mode, scale tuning
_CACHED_GENS = (0, 1, 2, 3, 4, 12, 45, 50, 48, 51, 52, 54, 56)


class SoundfontError(VidmusicError):
    """The bundled soundfont is missing or is not an SF2 file this patcher understands."""


def bundled_soundfont() -> Path:
    """Path of ``TimGM6mb.sf2`` inside the installed pretty_midi package."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise SoundfontError(f"{path} not found: the pretty_midi wheel should ship TimGM6mb.sf2")
    return path


def _chunks(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(id, payload offset, payload size) of the RIFF chunks in ``data[start:end]``."""
    out = []
    while start + 8 <= end:
        cid = data[start:start + 4]
        size = struct.unpack_from("<I", data, start + 4)[0]
        out.append((cid, start + 8, size))
        start += 8 + size + (size & 1)
    return out


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def fix_root_keys(data: bytes) -> bytes:
    """Return SF2 bytes whose sample headers carry each zone's effective root key (see module doc)."""
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise SoundfontError("not an SF2 (RIFF sfbk) file")
    lists = {data[o:o + 4]: (o, s) for cid, o, s in _chunks(data, 12, len(data)) if cid == b"LIST"}
    if b"sdta" not in lists or b"pdta" not in lists:
        raise SoundfontError("SF2 without sdta/pdta lists")
    so, ss = lists[b"sdta"]
    sdta = {cid: data[o:o + s] for cid, o, s in _chunks(data, so + 4, so + ss)}
    po, ps = lists[b"pdta"]
    pdta = [(cid, data[o:o + s]) for cid, o, s in _chunks(data, po + 4, po + ps)]
    sub = dict(pdta)
    if b"sm24" in sdta:
        raise SoundfontError("24-bit SF2 (sm24) not supported")
    smpl = bytearray(sdta[b"smpl"])
    igen = bytearray(sub[b"igen"])
    ibag = [_GEN.unpack_from(sub[b"ibag"], i) for i in range(0, len(sub[b"ibag"]), 4)]
    headers = [list(_SHDR.unpack_from(sub[b"shdr"], i)) for i in range(0, len(sub[b"shdr"]), _SHDR.size)]
    terminal = headers.pop()
    original_pitch = [h[6] for h in headers]
    inst = [struct.unpack_from("<20sH", sub[b"inst"], i)[1] for i in range(0, len(sub[b"inst"]), 22)]
    copies: dict[tuple, int] = {}  # (sample, zone attributes) -> header index
    rooted: set[int] = set()
    for i in range(len(inst) - 1):
        global_gens: dict[int, int] = {}
        for b in range(inst[i], inst[i + 1]):
            gens = {_GEN.unpack_from(igen, 4 * j)[0]: j for j in range(ibag[b][0], ibag[b + 1][0])}
            values = {op: struct.unpack_from("<h", igen, 4 * j + 2)[0] for op, j in gens.items()}
            if _SAMPLE_ID not in gens:
                if b == inst[i]:
                    global_gens = values  # the instrument's global zone: defaults for its other zones
                continue
            sid = _GEN.unpack_from(igen, 4 * gens[_SAMPLE_ID])[1]
            if sid >= len(original_pitch):
                continue
            eff = {**global_gens, **values}
            root = eff.get(_ROOT_KEY, -1)
            root = root if 0 <= root <= 127 else original_pitch[sid]
            key = (sid, root) + tuple(eff.get(g) for g in _CACHED_GENS)
            if key in copies:
                target = copies[key]
            elif sid not in rooted:  # first use of this sample: re-root its header in place
                rooted.add(sid)
                headers[sid][6] = root
                target = copies[key] = sid
            elif headers[sid][9] == 1:  # another root or attribute set, mono sample: duplicate data + header
                name, start, end, lstart, lend, rate, _, corr, link, typ = headers[sid]
                shift = len(smpl) // 2 - start
                smpl += sdta[b"smpl"][2 * start:2 * end] + b"\0" * 92  # 46 zero points after each sample
                headers.append([name, start + shift, end + shift, lstart + shift, lend + shift, rate, root, corr,
                                link, typ])
                target = copies[key] = len(headers) - 1
            else:  # stereo-linked sample: left as it was
                continue
            struct.pack_into("<HH", igen, 4 * gens[_SAMPLE_ID], _SAMPLE_ID, target)
    headers.append(terminal)
    sub[b"igen"] = bytes(igen)
    sub[b"shdr"] = b"".join(_SHDR.pack(*h) for h in headers)
    sdta[b"smpl"] = bytes(smpl)
    body = b""
    for cid, o, s in _chunks(data, 12, len(data)):
        if cid == b"LIST" and data[o:o + 4] == b"sdta":
            body += _chunk(b"LIST", b"sdta" + b"".join(_chunk(k, v) for k, v in sdta.items()))
        elif cid == b"LIST" and data[o:o + 4] == b"pdta":
            body += _chunk(b"LIST", b"pdta" + b"".join(_chunk(k, sub[k]) for k, _ in pdta))
        else:
            body += _chunk(cid, data[o:o + s])
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"sfbk" + body


def fixed_soundfont_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the root-key-fixed copy of the bundled soundfont, written on first use (about 0.1 s)."""
    src = bundled_soundfont()
    data = src.read_bytes()
    digest = hashlib.sha256(data + f"v{PATCH_VERSION}".encode()).hexdigest()[:16]
    if cache_dir is None:
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        cache_dir = Path(tempfile.gettempdir()) / f"vidmusic-{uid}"
    path = Path(cache_dir) / f"TimGM6mb-rootfix-{digest}.sf2"
    if not path.is_file():
        fixed = fix_root_keys(data)
        with atomic_path(path) as tmp:
            tmp.write_bytes(fixed)
    return path
