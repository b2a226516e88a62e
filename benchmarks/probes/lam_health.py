"""Is a LAM alive on robot frames? Train it as the recipes' warm-up does, then measure.

    python -m lara.benchmarks.probes.lam_health --data outputs/demo_data --steps 300 --quantizer vq fsq

For each LAM setting: train the LAM alone on the demonstrations' frame pairs (o_t, o_{t+k}) of the training
episodes (AdamW, cosine schedule, clipping: the recipes' LAM warm-up), then, on held-out episodes:
- codebook health: the fraction of codes used over the whole held-out set and its perplexity;
- latent spread: the std of z across samples, relative to its mean norm (a collapsed LAM gives ~0);
- a ridge probe z -> the normalised action chunk a_t..a_{t+k-1} (fit on training episodes, R^2 on held-out
  ones) beside the same probe on the raw pixel difference o_{t+k} - o_t (pooled to 16 x 16) and on an
  untrained LAM's z: a live LAM beats both.
Prints a table and writes JSON (`--out`). Every figure comes from this run; nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import lara
from lara.linear_probe import ridge_r2
from lara.data import EpisodeDataset
from lara.model import latent_spread
from lara.outputs import settings
from lara.quantize import usage_stats


def load_pairs(paths: list[Path], frame_gap: int, image_size: int, held_out_every: int) -> dict:
    """Every valid (o_t, o_{t+k}) pair with its action chunk, split by episode (every n-th episode held out)."""
    data = EpisodeDataset(paths=paths, frame_gap=frame_gap, action_horizon=1, image_size=image_size,
                         drop_incomplete=True)
    frames, actions, episodes = [], [], []
    for i in range(len(data)):
        s = data[i]
        frames.append(s["lam_frames"])
        actions.append(s["lam_actions"])
        episodes.append(s["episode_index"])
    frames, actions, episodes = torch.stack(frames), torch.stack(actions), torch.tensor(episodes)
    held = episodes % held_out_every == held_out_every - 1
    return {"train": (frames[~held], actions[~held]), "test": (frames[held], actions[held]),
            "episodes": int(episodes.max()) + 1}


@torch.no_grad()
def latents(lam: lara.LatentActionModel, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Continuous z (N, n*d) and code indices (N, n) (None without a codebook) in eval mode."""
    was = lam.training
    lam.eval()
    zs, codes = [], []
    for chunk in frames.split(256):
        z = lam.encode(chunk.float() / 255.0)
        _, stats = lam.quantizer(z)
        zs.append(z.flatten(1))
        if "indices" in stats:
            codes.append(stats["indices"])
    lam.train(was)
    return torch.cat(zs), (torch.cat(codes) if codes else None)


def spread(z: torch.Tensor) -> float:
    """Std of z (N, D) across samples (mean over dims) relative to z's RMS: 0 for a constant latent; the
    `lam/z_std` that training logs."""
    return float(latent_spread(z, z.new_ones(len(z))))


def code_health(codes: torch.Tensor | None, num_codes: int) -> dict:
    if codes is None:
        return {"codes_used": None, "code_usage": None, "perplexity": None}
    stats = usage_stats(codes, num_codes)
    return {"codes_used": int(codes.unique().numel()), "code_usage": float(stats["code_usage"]),
            "perplexity": float(stats["perplexity"])}


def pixel_difference(frames: torch.Tensor, pooled: int = 16) -> torch.Tensor:
    """o_{t+k} - o_t average-pooled to pooled x pooled, flattened: the baseline representation."""
    f = frames.float() / 255.0
    return F.adaptive_avg_pool2d(f[:, 1] - f[:, 0], pooled).flatten(1)


def train_lam(cfg: lara.LAMConfig, frames: torch.Tensor, actions: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int,
              log_every: int) -> tuple[lara.LatentActionModel, list[dict]]:
    """The recipes' LAM warm-up in one loop: AdamW (0.9, 0.95), cosine to 0, grad-norm clip 1."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    lam = lara.LatentActionModel(cfg)
    opt = torch.optim.AdamW(lam.parameters(), lr=lr, betas=(0.9, 0.95))
    schedule = get_cosine_schedule_with_warmup(opt, 0, steps)
    g = torch.Generator().manual_seed(seed)
    log = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(frames), (batch_size,), generator=g)
        out = lam(frames[idx].float() / 255.0, actions[idx] if cfg.action_horizon else None)
        out.losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(lam.parameters(), 1.0)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps:
            copy = (out.target - out.now).pow(2).mean()  # the error of predicting o_{t+k} = o_t
            mse = (out.pred.detach() - out.target).pow(2).mean()
            log.append({"step": step, "recon": float(out.losses["recon"].detach()), "mse_vs_copy": float(mse / copy),
                        "perplexity": float(out.stats["perplexity"]),
                        "code_usage": float(out.stats["code_usage"]), "z_spread": spread(out.z.detach().flatten(1))})
    return lam, log


def measure(cfg: lara.LAMConfig, pairs: dict, args) -> dict:
    (train_f, train_a), (test_f, test_a) = pairs["train"], pairs["test"]
    flat_train, flat_test = train_a.flatten(1), test_a.flatten(1)
    untrained = lara.LatentActionModel(cfg)
    start = time.time()
    lam, log = train_lam(cfg, train_f, train_a, args.steps, args.batch_size, args.lr, args.seed, args.log_every)
    train_s = time.time() - start
    z_train, _ = latents(lam, train_f)
    z_test, codes = latents(lam, test_f)
    u_train, _ = latents(untrained, train_f)
    u_test, _ = latents(untrained, test_f)
    return {
        "config": {k: getattr(cfg, k) for k in ("quantizer", "codebook_size", "recon_weighting", "image_size",
                                                "patch_size", "width", "idm_layers", "fdm_layers")},
        "train_s": round(train_s, 1), "log": log,
        **code_health(codes, getattr(lam.quantizer, "num_codes", 0)),
        "z_spread": spread(z_test), "mse_vs_copy": log[-1]["mse_vs_copy"],
        "probe_r2": ridge_r2(z_train, flat_train, z_test, flat_test),
        "probe_r2_untrained": ridge_r2(u_train, flat_train, u_test, flat_test),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lara.benchmarks.probes.lam_health", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, nargs="+", required=True, help="LIBERO HDF5 files or folders")
    p.add_argument("--quantizer", nargs="+", default=["vq"], help="quantizers to compare (vq nsvq fsq none)")
    p.add_argument("--recon-weighting", nargs="+", default=[None],
                   help="lam.recon_weighting values to compare (default: the LAMConfig default)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more LAMConfig fields (YAML values)")
    p.add_argument("--steps", type=int, default=300, help="LAM warm-up steps (make demo and posttrain_token_vla: 1000)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="posttrain.lam_lr's default")
    p.add_argument("--frame-gap", type=int, default=9)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=16, help="make demo: 16")
    p.add_argument("--held-out-every", type=int, default=4, help="every n-th episode is held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    import yaml

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pairs = load_pairs(args.data, args.frame_gap, args.image_size, args.held_out_every)
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    (tf, ta), (xf, xa) = pairs["train"], pairs["test"]
    baseline = ridge_r2(pixel_difference(tf), ta.flatten(1), pixel_difference(xf), xa.flatten(1))
    print(f"{len(tf)} training / {len(xf)} held-out pairs from {pairs['episodes']} episodes; "
          f"pixel-difference probe R^2 {baseline:.3f}; load average {os.getloadavg()[0]:.1f}")
    results = []
    for quantizer in args.quantizer:
        for weighting in args.recon_weighting:
            fields = {"image_size": args.image_size, "patch_size": args.patch_size, "width": 128, "heads": 4,
                      "idm_layers": 2, "fdm_layers": 2, "quantizer": quantizer, **extra}
            if weighting is not None:
                fields["recon_weighting"] = weighting
            r = measure(lara.LAMConfig(**fields), pairs, args)
            results.append(r)
            usage = "-" if r["code_usage"] is None else f"{r['codes_used']} codes ({100 * r['code_usage']:.0f}%), " \
                                                          f"perplexity {r['perplexity']:.1f}"
            print(f"{quantizer:5s} {r['config']['recon_weighting']:8s} usage {usage}; z spread {r['z_spread']:.3f}; "
                  f"FDM mse / copy {r['mse_vs_copy']:.3f}; "
                  f"probe R^2 {r['probe_r2']:.3f} (untrained {r['probe_r2_untrained']:.3f}, pixel diff "
                  f"{baseline:.3f}); {r['train_s']} s", flush=True)
    report = {"settings": settings(args), "pixel_difference_r2": baseline,
              "pairs": {"train": len(tf), "held_out": len(xf)}, "load_average": os.getloadavg()[0],
              "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
