"""AdamW's foreach loop (the trainer's default) against torch's fused kernel (`train.fused_adamw=true`), side by side.

    python -m lara.benchmarks.perf.optimizer             # the overhead benchmark's mid-size pi0 with LARA attached
    python -m lara.benchmarks.perf.optimizer --tiny      # tiny pi0, seconds

The weights are those of `lara.benchmarks.perf.overhead`'s model (the real FLOP proportion of LAM to VLA) and its
gradients those of one training step, computed once. Two copies of the weights, each with its own AdamW (foreach,
fused), take the same gradients, steps interleaved with the order alternating; each figure is the median step, in
wall time and in the process's CPU time, for all trainable weights and for LARA's alone (LAM + projector). Then how
far apart the copies have moved: the largest |foreach - fused| over the largest |weight|. Last line:
`optimizer fused=<fused/foreach CPU-time ratio, all weights> lara=<the same, LARA's weights> drift=<...>`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch

import lara
from lara.benchmarks.perf.overhead import build, training_batch


def copies(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Leaf copies of `params` holding copies of their gradients."""
    out = []
    for p in params:
        c = p.detach().clone().requires_grad_(True)
        c.grad = p.grad.detach().clone()
        out.append(c)
    return out


def race(params: list[torch.nn.Parameter], repeats: int) -> dict[str, float]:
    """Median ms per AdamW step of each kernel on copies of `params`, interleaved; and the drift between them."""
    weights = {kernel: copies(params) for kernel in ("foreach", "fused")}
    optimizers = {kernel: torch.optim.AdamW(w, lr=1e-4, betas=(0.9, 0.95), **{kernel: True})
                  for kernel, w in weights.items()}
    wall, cpu = {k: [] for k in optimizers}, {k: [] for k in optimizers}
    for r in range(2 + repeats):  # two warm-up rounds: the state is allocated on the first step
        for kernel in (("foreach", "fused") if r % 2 else ("fused", "foreach")):
            start, seconds = time.perf_counter(), time.process_time()
            optimizers[kernel].step()
            if r >= 2:
                wall[kernel].append(time.perf_counter() - start)
                cpu[kernel].append(time.process_time() - seconds)
    scale = max(w.abs().max().item() for w in weights["foreach"])
    drift = max((a - b).abs().max().item() for a, b in zip(weights["foreach"], weights["fused"]))
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    return {"foreach": ms(wall["foreach"]), "fused": ms(wall["fused"]), "foreach_cpu": ms(cpu["foreach"]),
            "fused_cpu": ms(cpu["fused"]), "drift": drift / scale, "tensors": len(params),
            "numel": sum(p.numel() for p in params)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny pi0 (seconds) instead of the mid-size config")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps of each kernel, interleaved")
    args = parser.parse_args(argv)
    from transformers import PI0ForConditionalGeneration

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    torch.manual_seed(0)
    cfg, lam_cfg, batch_size, _ = build(args.tiny)
    model = lara.attach(PI0ForConditionalGeneration(cfg), lara.LaraConfig(lam=lam_cfg))
    model(**training_batch(cfg, lam_cfg, batch_size)).loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    ours = {id(p) for part in (model.lam, model.projector) for p in part.parameters()}
    results = {"all": race(trainable, args.repeats),
               "lara": race([p for p in trainable if id(p) in ours], args.repeats)}
    for name, r in results.items():
        print(f"{name} trainable weights ({r['tensors']} tensors, {r['numel']:,} values): foreach {r['foreach']:.2f} ms, "
              f"fused {r['fused']:.2f} ms per step (median of {args.repeats}); CPU time {r['foreach_cpu']:.2f}, "
              f"{r['fused_cpu']:.2f} ms; drift after {args.repeats + 2} steps {r['drift']:.2e} of the largest weight")
    ratio = lambda r: r["fused_cpu"] / r["foreach_cpu"]  # noqa: E731
    print(f"optimizer fused={ratio(results['all']):.3f} lara={ratio(results['lara']):.3f} "
          f"drift={results['all']['drift']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
