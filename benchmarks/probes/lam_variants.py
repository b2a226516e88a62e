"""Train LAM variants on the training episodes of `lara probe`'s split, for the probe to judge.

    python -m lara.benchmarks.probes.lam_variants --data data/probe_object64 data/probe_spatial64 \\
        --variants vq vq_action vlm --steps 600 --out runs/probe_lams
    lara probe --data data/probe_object64 data/probe_spatial64 --represent lam:runs/probe_lams/vq ...
    python -m lara.benchmarks.probes.lam_variants --synthetic 1000 --width 32 --layers 1 --out runs/probe_syn

The split is `lara probe`'s (same data, `--frame-gap`, `--stride`, `--test-fraction`, `--seed`), so the probe's
held-out episodes are never seen in training. Each variant is trained as the recipes' LAM warm-up
(`lam_health.train_lam`: AdamW, cosine schedule, clipping) and saved with `lara.save_lam` under OUT/<variant>.
Variants (64 px by default, 16 px synthetic; patch = a quarter of the side; width 128, 2 + 2 layers):
  vq         pixels in and out, VQ codebook, reconstruction only
  vq_action  the same plus the action head A(z) -> a_{t:t+k} (what the recipes train where actions exist)
  vlm        pixels in; the FDM target is a PaliGemma's prompted pooled features (`lam.target: vlm`), no
             quantizer; the PaliGemma is built from a small config with random weights (a check of the method)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import lara
from lara.benchmarks.probes.lam_health import train_lam
from lara.benchmarks.probes.probe import load_pairs, split_by_episode, synthetic_pairs
from lara.errors import InputError


def small_paligemma(image_size: int) -> dict:
    """A PaliGemma config of random weights (SigLIP 2 layers, Gemma 2 layers, width 64)."""
    width = 64
    return dict(model_type="paligemma", image_token_index=299, projection_dim=width,
                vision_config=dict(model_type="siglip_vision_model", hidden_size=width, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=2 * width, image_size=image_size,
                                   patch_size=image_size // 8, projection_dim=width),
                text_config=dict(model_type="gemma", hidden_size=width, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, head_dim=32, intermediate_size=2 * width, vocab_size=300))


def variant_config(name: str, image_size: int, horizon: int, action_dim: int, width: int = 128,
                   layers: int = 2) -> lara.LAMConfig:
    base = dict(image_size=image_size, patch_size=image_size // 4, width=width, heads=4 if width % 4 == 0 else 1,
                idm_layers=layers, fdm_layers=layers)
    variants = {
        "vq": dict(quantizer="vq"),
        "vq_action": dict(quantizer="vq", action_horizon=horizon, action_dim=action_dim),
        "vlm": dict(quantizer="none", target="vlm", target_model=small_paligemma(image_size)),
    }
    if name not in variants:
        raise InputError(f"unknown LAM variant {name!r}; expected one of {', '.join(variants)}.")
    return lara.LAMConfig(**base, **variants[name])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lara.benchmarks.probes.lam_variants", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, nargs="+", help="data sources with actions")
    source.add_argument("--synthetic", type=int, metavar="N", help="`lara probe --synthetic N`'s pairs instead")
    p.add_argument("--variants", nargs="+", default=["vq", "vq_action", "vlm"])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=128, help="IDM / FDM width")
    p.add_argument("--layers", type=int, default=2, help="IDM and FDM blocks each")
    p.add_argument("--frame-gap", type=int, default=9)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--camera", default="agentview_rgb")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="OUT/<variant> receives each saved LAM")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.synthetic:
        data, image_size = synthetic_pairs(args.synthetic, args.seed), 16
    else:
        data, image_size = load_pairs(args.data, args.frame_gap, args.image_size, args.camera, args.stride), args.image_size
    test, _ = split_by_episode(data, args.test_fraction, args.seed)
    frames, actions = data.frames[~test], data.actions[~test]
    for name in args.variants:
        cfg = variant_config(name, image_size, data.actions.shape[1], data.actions.shape[-1], args.width, args.layers)
        start = time.time()
        lam, log = train_lam(cfg, frames, actions, args.steps, args.batch_size, args.lr, args.seed, 100)
        folder = lara.save_lam(lam, args.out / name)
        (folder / "train_log.json").write_text(json.dumps({"log": log, "seconds": round(time.time() - start, 1),
                                                           "load_average": os.getloadavg()[0],
                                                           "train_pairs": len(frames)}, indent=1))
        print(f"{name}: {args.steps} steps in {time.time() - start:.0f} s, last {log[-1]}", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    from lara.errors import run_command

    raise SystemExit(run_command("lam_variants", main, sys.argv[1:]))
