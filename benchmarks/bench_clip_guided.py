"""Seconds per output second of the ``clip_guided`` visualizer, and how they grow with song length (issue 22).

    python benchmarks/bench_clip_guided.py [--size 128] [--fps 24] [--steps 20] [--cutouts 4] [--width 64]

No weights ship, so the models are random and small but in the real layouts (transformers ``CLIPModel`` with a
ViT of ``--width``, a Wav2CLIP ResNet-18 of width ``--width / 8`` imported from a checkpoint in the upstream key
layout, a diffusers ``VQModel`` with 16x upsampling like taming-transformers' f16 VQGAN); the figures are about
the method's cost structure, not image quality. Three songs (clicks + tones): 15 s with 2 sections, 60 s with the
same 2 sections (4x the frames), 60 s with 8 sections (4x the keyframes). The sections are set directly, so the
comparison does not depend on the section detector. For each it prints the plan time (keyframe optimisation:
``sections x steps`` CLIP + decoder passes), the render + encode time (one decoder pass per frame), and seconds
per output second. Goal: plan time linear in sections and flat in frames; render time linear in frames.
Upstream reference (MetaMusic / Wav2CLIP's VQGAN-CLIP script): about 2 h per video on a GPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_models(root: Path, width: int) -> None:
    from diffusers import VQModel
    from transformers import CLIPConfig, CLIPModel

    from clip_guided.wav2clip import Wav2CLIP, import_wav2clip

    torch.manual_seed(0)
    dim = 8 * (width // 8)
    CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2, num_attention_heads=4,
                         vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=4, num_attention_heads=4,
                           image_size=224, patch_size=32),
        projection_dim=dim)).save_pretrained(root / "clip")
    VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 5,
            up_block_types=("UpDecoderBlock2D",) * 5, block_out_channels=(16, 16, 32, 32, 64), layers_per_block=1,
            latent_channels=32, num_vq_embeddings=256, vq_embed_dim=32, norm_num_groups=8,
            sample_size=256).save_pretrained(root / "vqgan")
    model = Wav2CLIP(width // 8)
    state = {("audio_encoder." if k.startswith("encoder.") else "audio_transform.") + k.split(".", 1)[1]: v
             for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, root / "ResNet_CX.ckpt")
    assert import_wav2clip(root / "ResNet_CX.ckpt", root / "wav2clip").ok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cutouts", type=int, default=4)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args(argv)

    from clip_guided.visualizer import ClipGuidedVisualizer
    from vidmusic_core.song import Section, analyse_song
    from vidmusic_core.testing import write_test_song
    from vidmusic_core.video import mux_audio, video_writer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_models(root, args.width)
        vis = ClipGuidedVisualizer(ClipGuidedVisualizer.Config(
            clip_dir=str(root / "clip"), wav2clip_dir=str(root / "wav2clip"), vqgan_dir=str(root / "vqgan"),
            steps=args.steps, cutouts=args.cutouts))
        rows = []
        for seconds, n_sections in ((15.0, 2), (60.0, 2), (60.0, 8)):
            wav = write_test_song(root / f"song{seconds:g}.wav", seconds=seconds)
            song = analyse_song(wav)
            edges = np.linspace(0.0, song.duration, n_sections + 1)
            song = dataclasses.replace(song, sections=[Section(float(a), float(b)) for a, b in zip(edges, edges[1:])])
            t0 = time.perf_counter()
            plan = vis.plan(song, (args.size, args.size), args.fps, 0)
            t1 = time.perf_counter()
            n = int(round(song.duration * args.fps))
            with video_writer(root / "v.mp4", args.size, args.size, args.fps) as write:
                for a in range(0, n, int(args.fps * 5)):
                    write(vis.render(plan, np.arange(a, min(n, a + int(args.fps * 5))) / args.fps))
            mux_audio(root / "v.mp4", wav, root / "out.mp4")
            t2 = time.perf_counter()
            rows.append((seconds, n_sections, n, t1 - t0, t2 - t1, (t2 - t0) / song.duration))
            print(f"{seconds:5.0f} s, {n_sections} sections, {n:5d} frames: plan {t1 - t0:7.1f} s, render+encode "
                  f"{t2 - t1:7.1f} s, {(t2 - t0) / song.duration:6.2f} s per output second", flush=True)
        (s15, s60, s60k) = rows
        print(f"4x frames, same sections: plan x{s60[3] / s15[3]:.2f}, render x{s60[4] / s15[4]:.2f}")
        print(f"4x sections, same frames: plan x{s60k[3] / s60[3]:.2f}, render x{s60k[4] / s60[4]:.2f}")
        print(f"settings: {args.size}x{args.size}, {args.fps:g} fps, {args.steps} steps x {args.cutouts} cutouts, "
              f"CLIP width {args.width}, torch threads {torch.get_num_threads()}; upstream: ~2 h per video on a GPU")


if __name__ == "__main__":
    sys.exit(main())
