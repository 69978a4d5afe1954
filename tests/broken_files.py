"""Real broken media for the bad-item tests."""
from pathlib import Path

import numpy as np


def corrupt_later_packets(path: Path) -> None:
    """Overwrite the video packets after the first third with random bytes, in place: the header, the index and
    the first frames stay valid (probing passes), and decoding fails part-way through. Checks it does."""
    import av

    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    raw = bytearray(path.read_bytes())
    for pos, size in packets[len(packets) // 3:]:
        raw[pos:pos + size] = np.random.default_rng(pos).bytes(size)
    path.write_bytes(bytes(raw))
    with av.open(str(path)) as c:
        frames = c.decode(video=0)
        next(frames)  # the first frame decodes
        try:
            for _ in frames:
                pass
        except av.FFmpegError:
            return
    raise AssertionError(f"{path} still decodes to the end after corrupting its later packets")
