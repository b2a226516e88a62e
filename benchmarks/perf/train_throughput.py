"""Training throughput of the demo config with and without LARA, measured side by side in one run.

    python -m lara.benchmarks.perf.train_throughput                 # the demo's data (generated if missing)
    python -m lara.benchmarks.perf.train_throughput --rounds 8 --steps 5

Both variants are the `make demo` post-training config (posttrain_token_vla with the demo's overrides):
the TokenVLA alone (`baseline=true`) and the TokenVLA with LARA attached (LAM + projector + alignment).
They train on the same pre-collated batches of the demo's LIBERO demonstrations with the trainer's
optimiser (AdamW, gradient clipping); rounds alternate which variant goes first, and each variant's
figure is the median over rounds. Data loading is left out: it is the same for both. Last line:
`throughput lara=<samples/s> baseline=<samples/s> ratio=<lara/baseline>`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

import lara
from lara.benchmarks import demo
from lara.adapters.common import baseline_step, build_vla, lara_step, load_data
from lara.adapters.config import load_recipe
from lara.adapters.trainer import seed_everything


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("outputs/demo_data"), help="LIBERO HDF5 folder (default: the demo's cache, generated if missing)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (each variant once per round)")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per variant and round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = demo.build_parser().parse_args(["--data", str(args.data), "--batch-size", str(args.batch_size)])
    if not any(args.data.glob("*.hdf5")):
        demo.demonstrations(settings, "libero_object", [int(t) for t in settings.tasks.split(",")])
    cfg = load_recipe("posttrain_token_vla", demo.training_overrides(settings, Path("outputs/throughput")))
    seed_everything(0)
    data = load_data(cfg)
    vla, processor, _ = build_vla(cfg, data.statistics)
    variants = {"baseline": (copy.deepcopy(vla), baseline_step), "lara": (lara.attach(vla, cfg.lara), lara_step)}
    optimizers = {name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
                  for name, (model, _) in variants.items()}
    g = torch.Generator().manual_seed(0)
    batches = [processor([data[int(i)] for i in torch.randint(len(data), (args.batch_size,), generator=g)])
               for _ in range(args.steps)]
    print(f"{len(data)} samples from {args.data}; batch {args.batch_size}; torch threads {torch.get_num_threads()}")
    for name, (model, _) in variants.items():
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"  {name:8s} trainable parameters {params:,}")

    def timed(name: str) -> float:
        model, step = variants[name]
        start = time.perf_counter()
        for batch in batches:
            loss, _ = step(model, batch)
            loss.backward()
            if cfg.train.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
        return args.steps * args.batch_size / (time.perf_counter() - start)

    for name in variants:  # warm-up: allocator, first-call overheads
        timed(name)
    rates = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            rates[name].append(timed(name))
        print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:.1f} samples/s" for n in variants), flush=True)
    median = {name: statistics.median(v) for name, v in rates.items()}
    print(f"throughput lara={median['lara']:.1f} baseline={median['baseline']:.1f} "
          f"ratio={median['lara'] / median['baseline']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
