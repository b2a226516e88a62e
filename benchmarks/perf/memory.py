"""What LARA costs in memory: the peak of a full fine-tuning step with and without it.

    python -m lara.benchmarks.perf.memory            # a 146M pi0 + a LAM at the release's size proportion
    python -m lara.benchmarks.perf.memory --tiny     # tiny pi0, seconds

The proportion that matters for memory is the trainable parameters' (weights, gradients and AdamW's two
moments all scale with them): the LARA release trains a LAM of tens of millions of parameters beside a
3-7B VLA, about 1 % of it (`--lam-share`; pi0 has 3.5B). A 3B model does not train on this machine's
memory, so a mid-size pi0 (146M, 112 px images of 64 patches, the LAM seeing 64 px frames of 64 patches)
is built and the LAM whose parameter count is nearest that share of it is picked.

Each measurement is a fresh process that builds the model (seeded), runs `--steps` AdamW steps and reports
its peak: `max_memory_allocated` on a GPU, the process's peak resident set (ru_maxrss) on a CPU, which also
counts the interpreter and libraries (the same in both arms). The two arms alternate, `--repeats` times each,
and the medians are compared. Last line: `memory ratio=<lara/base>x base=<MiB> lara=<MiB>`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import torch

import lara
from lara.vla.pi0 import pi0_batch, pi0_config


def vla_config(tiny: bool):
    if tiny:
        return pi0_config()
    return pi0_config(width=768, expert_width=384, layers=8, image_size=112, patch_size=14, vision_layers=8,
                      chunk_size=10, action_dim=8, heads=8, vocab_size=1024)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lam_config(tiny: bool, vla_params: int, share: float) -> lara.LAMConfig:
    """The default LAM's structure at the width and depth whose parameter count is nearest `share` of the VLA's."""
    if tiny:
        return lara.LAMConfig(image_size=32, patch_size=8, width=32, heads=2, idm_layers=1, fdm_layers=1)
    candidates = [lara.LAMConfig(image_size=64, patch_size=8, width=width, heads=4, idm_layers=depth,
                                 fdm_layers=depth)
                  for width in (64, 96, 128, 160, 192) for depth in (2, 3, 4, 6)]
    sizes = {c.model_dump_json(): parameters(lara.LatentActionModel(c)) for c in candidates}
    return min(candidates, key=lambda c: abs(sizes[c.model_dump_json()] / vla_params - share))


def measure(arm: str, tiny: bool, share: float, batch_size: int, steps: int) -> dict:
    """One arm in this process: build, train `steps` steps, report the peak (MiB) and the parameter counts."""
    from transformers import PI0ForConditionalGeneration

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    cfg = vla_config(tiny)
    model = PI0ForConditionalGeneration(cfg)
    vla_params = parameters(model)
    lam_cfg = lam_config(tiny, vla_params, share)
    batch = pi0_batch(cfg, batch_size)
    if arm == "lara":
        model = lara.attach(model, lara.LaraConfig(lam=lam_cfg))
        size = lam_cfg.image_size
        batch["lam_frames"] = torch.randint(0, 256, (batch_size, 2, 3, size, size), dtype=torch.uint8)
    model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):  # AdamW allocates its moments at the first step
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    lam_params = parameters(model.lam) + parameters(model.projector) if arm == "lara" else 0
    return {"arm": arm, "peak_mib": peak, "device": device, "vla_params": vla_params, "lara_params": lam_params,
            "lam": lam_cfg.model_dump(include={"width", "idm_layers", "fdm_layers", "image_size"})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny pi0 (seconds) instead of the mid-size config")
    parser.add_argument("--lam-share", type=float, default=0.01,
                        help="LAM parameters / VLA parameters to reproduce (release: tens of M beside 3-7B)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each arm, alternating")
    parser.add_argument("--arm", choices=["base", "lara"], help=argparse.SUPPRESS)  # a child process's one arm
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(measure(args.arm, args.tiny, args.lam_share, args.batch_size, args.steps)))
        return 0
    peaks: dict[str, list[float]] = {"base": [], "lara": []}
    for r in range(args.repeats):
        for arm in (("base", "lara") if r % 2 == 0 else ("lara", "base")):  # alternate the order
            command = [sys.executable, "-m", "lara.benchmarks.perf.memory", "--arm", arm,
                       "--lam-share", str(args.lam_share), "--batch-size", str(args.batch_size),
                       "--steps", str(args.steps), *(["--tiny"] if args.tiny else [])]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout
                                .strip().splitlines()[-1])
            peaks[arm].append(result["peak_mib"])
            print(f"{arm}: peak {result['peak_mib']:.0f} MiB ({result['device']})", flush=True)
            if arm == "lara":
                info = result
    share = info["lara_params"] / info["vla_params"]
    print(f"VLA pi0 {info['vla_params'] / 1e6:.1f}M params; LAM + projector {info['lara_params'] / 1e6:.2f}M "
          f"({share:.2%} of the VLA; LAM {info['lam']}); batch {args.batch_size}, full fine-tuning, AdamW, fp32")
    base, with_lara = statistics.median(peaks["base"]), statistics.median(peaks["lara"])
    print(f"memory ratio={with_lara / base:.3f}x base={base:.0f} lara={with_lara:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
