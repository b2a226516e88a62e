"""`make demo`: a short LARA training of the reference TokenVLA on generated moving-object frames.

The task: an instruction names a target ("move the square to the top left"); the robot action
(dx, dy) is the move towards it, which the policy infers from o_t and the instruction while the
language-free LAM must read it from (o_t, o_{t+k}). The TokenVLA learns it as OpenVLA-style action tokens while the
jointly trained LAM learns latent actions from (o_t, o_{t+k}) and the two are aligned. It prints the
loss components as it trains, then the held-out action-token accuracy and the linear-probe R^2 of the
LAM latents (how much of the true action they carry), and saves the VLA and the LARA artifact.
CPU only, no downloads, about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import lara
from lara.benchmarks.probes.linear_probe import probe_latents
from lara.benchmarks.probes.synthetic import moving_object_pairs
from lara.vla.presets import tiny_token_vla
from lara.vla.token_vla import preprocess_images
from lara.vla.tokenizer import build_example, collate


def make_batch(model, frames: torch.Tensor, shifts: torch.Tensor, instructions: list[str]) -> dict:
    """VLA inputs (image o_t, prompt, action tokens) + the LARA frames (o_t, o_{t+k})."""
    actions = np.zeros((len(shifts), 7), np.float32)
    actions[:, :2] = shifts.numpy()  # (dx, dy) in [-1, 1]; the other dims stay 0 (gripper open = -1 not needed)
    ids = model.action_tokenizer.encode(actions)
    batch = collate([build_example(text, row) for text, row in zip(instructions, ids)])
    batch["pixel_values"] = preprocess_images(frames[:, 0], model.config.vision_config.image_size)
    batch["lam_frames"] = frames
    return batch


@torch.no_grad()
def action_accuracy(model, frames: torch.Tensor, shifts: torch.Tensor, instructions: list[str]) -> float:
    """Fraction of (dx, dy) decoded within 8 bins of the truth (greedy, held-out frames)."""
    pixels = preprocess_images(frames[:, 0], model.config.vision_config.image_size)
    pred = np.concatenate(
        [model.predict_action(pixels[i : i + 1], [instructions[i]], unnorm=False) for i in range(len(pixels))]
    )
    return float((np.abs(pred[:, :2] - shifts.numpy()) < 8 / 255).all(1).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lam-warmup", type=int, default=900,
                        help="LAM-only steps on the frames before joint training (the release pre-trains its LAM)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    frames, shifts, texts = moving_object_pairs(2000, size=16, square=4, max_shift=3, seed=args.seed, instructed=True)
    train, held_out = slice(0, 1600), slice(1600, 2000)
    vla = tiny_token_vla(width=64, layers=2, image_size=16)
    lam_cfg = lara.LAMConfig(image_size=16, patch_size=4, width=64, heads=4, idm_layers=2, fdm_layers=2)
    model = lara.attach(vla, lara.LaraConfig(lam=lam_cfg))
    print(model.trainable_parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    start = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    lam_opt = torch.optim.AdamW(model.lam.parameters(), lr=1e-3)
    for step in range(1, args.lam_warmup + 1):  # paradigm 1: the LAM learns from frames alone first
        idx = torch.randint(train.start, train.stop, (args.batch_size,), generator=g)
        lam_out = model.lam(frames[idx].float() / 255)
        lam_out.losses["total"].backward()
        lam_opt.step()
        lam_opt.zero_grad(set_to_none=True)
        if step % 100 == 0:
            print(f"LAM warm-up {step:4d} recon={lam_out.losses['recon'].item():.4f} "
                  f"code_usage={lam_out.stats['code_usage'].item():.3f}", flush=True)
    print(f"LAM probe R^2 after warm-up: {probe_latents(model.lam, frames[held_out], shifts[held_out]):.3f}")
    for step in range(1, args.steps + 1):
        idx = torch.randint(train.start, train.stop, (args.batch_size,), generator=g)
        out = model(**make_batch(vla, frames[idx], shifts[idx], [texts[i] for i in idx]))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == 1:  # .item() only at the logging interval
            parts = " ".join(f"{k}={v.item():.4f}" for k, v in out["lara"].items())
            print(f"step {step:4d} loss={out.loss.item():.4f} {parts}", flush=True)
    elapsed = time.perf_counter() - start

    model.eval()
    r2 = probe_latents(model.lam, frames[held_out], shifts[held_out])
    accuracy = action_accuracy(vla, frames[held_out][:100], shifts[held_out][:100], texts[held_out][:100])
    lara.save(model, args.out / "lara")
    lara.detach(model).save_pretrained(args.out / "vla")
    print(f"\ntrained {args.steps} steps in {elapsed:.0f} s")
    print(f"held-out action accuracy (dx, dy within 8 bins): {accuracy:.2f}")
    print(f"LAM latent probe R^2 (true action from z, held-out): {r2:.3f}")
    print(f"saved: {args.out / 'vla'} (VLA, save_pretrained) and {args.out / 'lara'} (projector + LAM)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
