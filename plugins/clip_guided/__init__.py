"""``clip_guided``: MetaMusic's music -> video method (Wav2CLIP audio embedding, CLIP-guided VQGAN keyframes)."""
