"""Rule-based music of the toy dataset: clip plan (tempo, beats, key, sections), MIDI and audio.

Every note starts on a beat (and legato notes end on one), so the beat grid is the onset grid: a
kick and a closed hi-hat on every beat (snare on 2 and 4), bass on the chord roots, a triad in the
harmony part, a lead line of chord and scale tones. The chord changes every two beats; a section
(between two cuts of the video) has its own progression, programs and note density. Sections and
melody are redrawn until a Krumhansl-Schmuckler key finder names the planned key from the notes with
a margin, also after a model of what harmonics do to an audio chroma (:func:`harmonic_smear`).

Rendering uses symusic's synthesizer with the General MIDI soundfont of the pretty_midi wheel, fixed by
:mod:`.toy_soundfont` (symusic 0.5.9 ignores the soundfont's per-zone root keys, which put piano,
guitar, bass, violin, ... whole semitones off). With the fix, a trial of 86 (part, program) candidates
(each semitone of the part's range rendered alone; chroma argmax, ``librosa.estimate_tuning``) found
all but whistle in tune; :data:`PROGRAMS` keeps programs with a clean, harmonic sound, the chroma of
every semitone of the part's range right and tuning within 0.1 semitone: basses 33 34 35 38 39 43, harmony
0 4 19 24 46 48 53 89, leads 0 10 41 56 68 73 79 108. The GM drum kit (``is_drum``) renders fine; its
kick and hi-hat are the beat onsets. The synthesizer ignores velocity, so :func:`render` mixes the
tracks itself (:data:`MIX`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TPQ = 480
TEMPO_RANGE = (70, 150)
MIN_LEAD = 0.05  # s; the first beat falls in [MIN_LEAD, MIN_LEAD + one beat)
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
#: roman numeral -> scale degree (triads are stacked thirds of the scale, so quality follows the mode)
ROMAN = {"I": 0, "ii": 1, "iii": 2, "IV": 3, "V": 4, "vi": 5, "i": 0, "III": 2, "iv": 3, "v": 4, "VI": 5,
         "VII": 6}
PROGRESSIONS = {
    "major": (("I", "V", "vi", "IV"), ("I", "IV", "V", "I"), ("I", "vi", "IV", "V"), ("I", "IV", "I", "V"),
              ("I", "ii", "V", "I")),
    "minor": (("i", "VI", "III", "VII"), ("i", "iv", "v", "i"), ("i", "iv", "VI", "v"), ("i", "III", "iv", "i"),
              ("i", "VI", "iv", "v")),
}
PROGRAMS = {"bass": (33, 34, 35, 38, 39, 43), "harmony": (0, 4, 19, 24, 46, 48, 53, 89),
            "lead": (0, 10, 41, 56, 68, 73, 79, 108)}
RANGES = {"bass": (36, 52), "harmony": (53, 76), "lead": (65, 84)}
VELOCITY = {"bass": 96, "harmony": 70, "lead": 92}  # written to the MIDI; the renderer ignores velocity
#: RMS of each part in the mix (per track, over the span of its notes): drums loud enough for clear
#: onsets, quiet enough to leave the chroma to the pitched parts
MIX = {"drums": 0.25, "bass": 0.35, "harmony": 0.3, "lead": 0.35}
KICK, SNARE, HAT = 36, 38, 42
BEATS_PER_CHORD = 2
KEY_TRIES, KEY_MARGIN = 50, 0.1
DENSITY_NAMES = {1: "sparse", 2: "steady", 3: "busy"}
# Krumhansl-Kessler key profiles
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass
class Section:
    """Beats ``[start_beat, end_beat)`` of a clip with one progression, set of programs and density."""

    start_beat: int
    end_beat: int
    progression: tuple[str, ...]
    programs: dict[str, int]
    density: int
    start: float = 0.0
    end: float = 0.0


@dataclass
class ClipMusic:
    """The plan of one clip and its notes; times in seconds are exact tick times of the MIDI."""

    seconds: float
    bpm: int
    mspq: int
    tonic: int
    mode: str
    first_beat_tick: int
    first_downbeat: int  # index of the first beat that starts a bar (4/4)
    sections: list[Section]
    notes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)  # part -> (tick, dur, pitch, vel)
    chords: list[dict] = field(default_factory=list)

    @property
    def sec_per_tick(self) -> float:
        return self.mspq / 1e6 / TPQ

    @property
    def tempo(self) -> float:
        return 60e6 / self.mspq

    def beat_ticks(self) -> list[int]:
        end = self.seconds / self.sec_per_tick
        return [t for t in range(self.first_beat_tick, int(np.ceil(end)), TPQ) if t * self.sec_per_tick < self.seconds]

    def beat_times(self) -> list[float]:
        return [t * self.sec_per_tick for t in self.beat_ticks()]

    def downbeat_times(self) -> list[float]:
        return [t for i, t in enumerate(self.beat_times()) if (i - self.first_downbeat) % 4 == 0]

    @property
    def key_name(self) -> str:
        return f"{NAMES[self.tonic]} {self.mode}"


def chord_pcs(tonic: int, mode: str, roman: str) -> tuple[int, int, int]:
    """Pitch classes (root, third, fifth) of a roman-numeral triad in a key."""
    scale, deg = SCALES[mode], ROMAN[roman]
    return tuple((tonic + scale[(deg + k) % 7]) % 12 for k in (0, 2, 4))  # type: ignore[return-value]


def chord_symbol(tonic: int, mode: str, roman: str) -> str:
    root, third, _ = chord_pcs(tonic, mode, roman)
    return NAMES[root] + ("" if (third - root) % 12 == 4 else "m")


def _key_scores(pc_hist: np.ndarray) -> dict[tuple[int, str], float]:
    return {(tonic, mode): float(np.corrcoef(np.roll(prof, tonic), pc_hist)[0, 1])
            for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)) for tonic in range(12)}


def estimate_key(pc_hist: np.ndarray) -> tuple[int, str]:
    """Krumhansl-Schmuckler key of a 12-bin pitch-class histogram: (tonic, "major"|"minor")."""
    scores = _key_scores(pc_hist)
    return max(scores, key=scores.__getitem__)


def key_margin(pc_hist: np.ndarray, tonic: int, mode: str) -> float:
    """Key-profile correlation of (tonic, mode) minus that of the best other key (> 0: it wins)."""
    scores = _key_scores(pc_hist)
    own = scores.pop((tonic, mode))
    return own - max(scores.values())


def harmonic_smear(pc_hist: np.ndarray) -> np.ndarray:
    """What an audio chroma sees of a note histogram: harmonics 1-8 with weights 1/sqrt(h) fold onto
    the pitch class (h = 1, 2, 4, 8), its fifth (3, 6), major third (5) and minor seventh (7). A
    cautious model: bright timbres push a minor key's chroma towards major."""
    out = np.zeros(12)
    for h, shift in zip(range(1, 9), (0, 0, 7, 0, 4, 7, 10, 0)):
        out += np.roll(pc_hist, shift) / np.sqrt(h)
    return out


def audio_chroma(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean chroma (librosa CQT chroma, hop 512) of an audio clip: 12 values."""
    import warnings

    import librosa

    with warnings.catch_warnings():  # short clips: librosa warns about its lowest, decimated octaves
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        return librosa.feature.chroma_cqt(y=audio, sr=sample_rate, hop_length=512).mean(axis=1)


def pitch_class_histogram(notes: dict[str, list[tuple[int, int, int, int]]]) -> np.ndarray:
    """Duration-weighted pitch-class histogram of the pitched parts."""
    hist = np.zeros(12)
    for part, ns in notes.items():
        if part != "drums":
            for _, dur, pitch, _ in ns:
                hist[pitch % 12] += dur
    return hist


def _place(pc: int, lo: int, hi: int, near: float) -> int:
    """The pitch of class ``pc`` in [lo, hi] nearest to ``near``."""
    cands = [p for p in range(lo, hi + 1) if p % 12 == pc]
    return min(cands, key=lambda p: abs(p - near))


def _plan_sections(rng: np.random.Generator, n_beats: int, first_downbeat: int) -> list[tuple[int, int]]:
    bounds = [i for i in range(1, n_beats) if (i - first_downbeat) % BEATS_PER_CHORD == 0]
    for min_beats in (4, 2):
        for n_sec in ((3, 2) if rng.random() < 0.5 else (2, 3)):
            combos = [c for c in itertools.combinations(bounds, n_sec - 1)
                      if all(b - a >= min_beats for a, b in zip((0,) + c, c + (n_beats,)))]
            if combos:
                cuts = combos[int(rng.integers(len(combos)))]
                edges = (0,) + cuts + (n_beats,)
                return list(zip(edges[:-1], edges[1:]))
    return [(0, n_beats)]


def plan_clip(rng: np.random.Generator, seconds: float) -> ClipMusic:
    """Draw tempo, phase, key, sections (progression, programs, density) and write the notes."""
    bpm = int(rng.integers(TEMPO_RANGE[0], TEMPO_RANGE[1] + 1))
    mspq = round(60e6 / bpm)
    period = mspq / 1e6
    phase = float(rng.uniform(0.0, period))
    tonic, mode = int(rng.integers(12)), ("major", "minor")[int(rng.integers(2))]
    first_downbeat = int(rng.integers(4))
    first_beat_tick = round(phase / (period / TPQ)) % TPQ
    if first_beat_tick * period / TPQ < MIN_LEAD:  # keep the first onset off the file's first frames
        first_beat_tick += TPQ
    best: tuple[float, ClipMusic | None] = (-np.inf, None)
    for _ in range(KEY_TRIES):  # redraw sections and melody until the notes clearly name the key
        clip = ClipMusic(seconds, bpm, mspq, tonic, mode, first_beat_tick, first_downbeat, [])
        _plan_parts(clip, rng)
        hist = pitch_class_histogram(clip.notes)
        margin = min(key_margin(hist, tonic, mode), key_margin(harmonic_smear(hist), tonic, mode))
        if margin > best[0]:
            best = (margin, clip)
        if margin >= KEY_MARGIN:
            break
    assert best[1] is not None
    return best[1]


def _plan_parts(clip: ClipMusic, rng: np.random.Generator) -> None:
    times = clip.beat_times()
    n_beats = len(times)
    prev: Section | None = None
    for a, b in _plan_sections(rng, n_beats, clip.first_downbeat):
        choices = [p for p in PROGRESSIONS[clip.mode] if prev is None or p != prev.progression]
        progression = choices[int(rng.integers(len(choices)))]
        programs: dict[str, int] = {}
        for part, pool in PROGRAMS.items():
            avoid = {prev.programs[part]} if prev is not None and part != "bass" else set()
            if part == "lead":
                avoid.add(programs["harmony"])
            options = [p for p in pool if p not in avoid]
            programs[part] = options[int(rng.integers(len(options)))]
        density = int(rng.integers(1, 4))
        if prev is not None and density == prev.density and rng.random() < 0.5:
            density = 1 + density % 3
        prev = Section(a, b, progression, programs, density)
        prev.start = 0.0 if a == 0 else times[a]
        prev.end = clip.seconds if b >= n_beats else times[b]
        clip.sections.append(prev)
    _write_notes(clip, rng)


def _write_notes(clip: ClipMusic, rng: np.random.Generator) -> None:
    ticks = clip.beat_ticks()
    end_tick = int(clip.seconds / clip.sec_per_tick)
    scale = SCALES[clip.mode]
    notes: dict[str, list[tuple[int, int, int, int]]] = {"drums": [], "bass": [], "harmony": [], "lead": []}
    lead = float(_place(clip.tonic, *RANGES["lead"], near=74))
    for si, sec in enumerate(clip.sections):
        ref = clip.first_downbeat if si == 0 else sec.start_beat
        for i in range(sec.start_beat, sec.end_beat):
            t = ticks[i]
            rel = i - ref
            bar_pos = (i - clip.first_downbeat) % 4
            roman = sec.progression[(rel // BEATS_PER_CHORD) % len(sec.progression)]
            pcs = chord_pcs(clip.tonic, clip.mode, roman)
            chord_start = rel % BEATS_PER_CHORD == 0 or i == sec.start_beat
            # drums: every beat
            notes["drums"].append((t, TPQ // 4, KICK, 124 if bar_pos == 0 else 108))
            notes["drums"].append((t, TPQ // 4, HAT, 72))
            if bar_pos in (1, 3):
                notes["drums"].append((t, TPQ // 4, SNARE, 92))
            beats_left = min(BEATS_PER_CHORD - rel % BEATS_PER_CHORD, sec.end_beat - i)
            if chord_start:
                clip.chords.append({"time": round(t * clip.sec_per_tick, 6), "roman": roman,
                                    "symbol": chord_symbol(clip.tonic, clip.mode, roman), "root": pcs[0]})
            every_beat = {"bass": sec.density >= 2, "harmony": sec.density >= 3, "lead": sec.density >= 2}
            for part in ("bass", "harmony", "lead"):
                if not (chord_start or every_beat[part]):
                    continue
                n_beats = 1 if every_beat[part] else beats_left
                dur = n_beats * TPQ  # legato: note-offs fall on beats too, never between them
                vel = VELOCITY[part]
                if part == "bass":
                    pc = pcs[2] if sec.density >= 3 and rel % 2 == 1 else pcs[0]
                    notes["bass"].append((t, dur, _place(pc, 36, 47, 41), vel))
                elif part == "harmony":
                    root = _place(pcs[0], 55, 66, 60)
                    for pc in pcs:
                        notes["harmony"].append((t, dur, root + (pc - pcs[0]) % 12, vel))
                else:
                    lead = _next_lead(rng, lead, pcs, scale, clip.tonic, chord_start)
                    notes["lead"].append((t, dur, int(lead), vel))
    for part, ns in notes.items():
        notes[part] = [(t, min(d, end_tick - t), p, v) for t, d, p, v in ns if t < end_tick]
    clip.notes = notes


def _next_lead(rng: np.random.Generator, prev: float, pcs: tuple[int, ...], scale: tuple[int, ...], tonic: int,
               chord_start: bool) -> int:
    lo, hi = RANGES["lead"]
    if chord_start:  # a chord tone near the previous note
        cands = sorted((abs(p - prev), p) for p in range(lo, hi + 1) if p % 12 in pcs)
        return cands[int(rng.integers(2))][1]
    steps = [p for p in range(lo, hi + 1) if (p - tonic) % 12 in scale and 0 < abs(p - prev) <= 4]
    return steps[int(rng.integers(len(steps)))]


def to_score(clip: ClipMusic):
    """The clip as a ``symusic.Score`` (ticks, one tempo, 4/4, key signature, one track per part)."""
    from symusic import KeySignature, Note, Score, Tempo, TimeSignature, Track

    score = Score(TPQ)
    score.tempos.append(Tempo(0, mspq=clip.mspq))
    score.time_signatures.append(TimeSignature(0, 4, 4))
    sharps = ((clip.tonic if clip.mode == "major" else (clip.tonic + 3) % 12) * 7 + 6) % 12 - 6
    score.key_signatures.append(KeySignature(0, sharps, 0 if clip.mode == "major" else 1))
    for part in ("drums", "bass", "harmony", "lead"):
        for program in sorted({s.programs[part] for s in clip.sections} if part != "drums" else {0}):
            track = Track(name=part if part == "drums" else f"{part} {program}", program=program,
                          is_drum=part == "drums")
            for t, d, p, v in clip.notes[part]:
                if part == "drums" or _program_at(clip, t)[part] == program:
                    track.notes.append(Note(t, d, p, v))
            score.tracks.append(track)
    return score


def _program_at(clip: ClipMusic, tick: int) -> dict[str, int]:
    time = tick * clip.sec_per_tick
    for s in clip.sections:
        if s.start - 1e-9 <= time < s.end - 1e-9:
            return s.programs
    return clip.sections[-1].programs


def render(score, sample_rate: int, seconds: float, soundfont: str | Path) -> np.ndarray:
    """Mono float32 audio of exactly ``seconds``, peak-normalised to 0.89 (about -1 dBFS).

    prestosynth ignores note velocity (it has no SF2 modulators) and its presets differ a lot in
    loudness, so each track is rendered alone, scaled to the RMS that :data:`MIX` gives its part (over
    the span of its notes) and the tracks are summed. A fresh synthesizer per call (1 ms): its sample
    cache never carries over from another clip."""
    from symusic import Score, Synthesizer

    synth = Synthesizer(sf_path=str(soundfont), sample_rate=sample_rate, quality=0)
    n = int(round(seconds * sample_rate))
    mix = np.zeros(n, np.float64)
    for track in score.tracks:
        if not len(track.notes):
            continue
        single = Score(score.ticks_per_quarter)
        single.tempos = score.tempos.copy()
        single.tracks.append(track.copy())
        audio = np.asarray(synth.render(single, stereo=False), dtype=np.float64)[0][:n]
        audio = np.pad(audio, (0, n - len(audio)))
        timed = single.to("second").tracks[0].notes
        a = int(min(x.time for x in timed) * sample_rate)
        b = int(max(x.end for x in timed) * sample_rate)
        rms = float(np.sqrt(np.mean(audio[a:max(b, a + 1)] ** 2)))
        if rms > 0:
            part = (track.name.split() or [""])[0]
            level = MIX.get(part, MIX["drums"] if track.is_drum else MIX["lead"])  # any other score: by kind
            mix += audio * (level / rms)
    peak = float(np.abs(mix).max())
    return (mix * (0.89 / peak) if peak > 0 else mix).astype(np.float32)
