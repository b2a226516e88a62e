"""What LARA costs: training-step time with and without it, and inference after `lara.detach`.

    python -m lara.benchmarks.perf.overhead            # mid-size pi0 + LAM at the real FLOP proportion
    python -m lara.benchmarks.perf.overhead --tiny     # tiny pi0, seconds

The mid-size config keeps the proportion that matters: the FLOPs of the default LAM at 224 px over
those of a 3B pi0 (both counted exactly with torch's FlopCounterMode, the 3B model on the meta device,
so nothing is allocated). A mid-size pi0 that trains on 2 CPU cores is built, and the LAM whose FLOPs
give the same ratio is picked. Times are medians of interleaved repeats in one run (machines are noisy), in wall
time and in the process's CPU time (all its threads), which other load on the machine bends less; `uptime` is printed
first. Last line: `overhead train=<wall ratio> train_cpu=<CPU-time ratio> infer=<ratio>`.

`--profile N` then profiles N training steps of each arm, interleaved (torch profiler, CPU): the top op groups in ms
per step for both arms, forward / backward / optimizer, and the host syncs per step (`aten::item`, `nonzero`, ...).
"""

from __future__ import annotations

import argparse
import collections
import copy
import statistics
import subprocess
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import lara
from lara.vla.pi0 import pi0_batch, pi0_config



def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def lam_flops(cfg: lara.LAMConfig) -> int:
    lam = lara.LatentActionModel(cfg)
    return count_flops(lambda: lam(torch.rand(1, 2, cfg.channels, cfg.image_size, cfg.image_size)))


def real_proportion() -> tuple[int, int]:
    """(forward FLOPs of a 3B pi0, of the default LAM at 224 px) per sample: one 224 px camera, 48 text tokens."""
    from transformers import PI0Config

    return vla_flops(PI0Config(), text_len=48), lam_flops(lara.LAMConfig(image_size=224))


def vla_flops(cfg, text_len: int = 16) -> int:
    """Forward FLOPs of one sample through a pi0 built on the meta device (no memory, any size)."""
    from transformers import PI0ForConditionalGeneration

    with torch.device("meta"):
        model = PI0ForConditionalGeneration(cfg)
        batch = pi0_batch(cfg, 1, text_len=text_len, device="meta")
    # run outside the meta context: pi0 samples its flow timestep on the host
    return count_flops(lambda: model(**batch))


def matching_lam(target: float) -> lara.LAMConfig:
    """The default LAM's structure (layers, latent, quantizer) at the size whose FLOPs are nearest `target`."""
    candidates = [
        lara.LAMConfig(image_size=size, patch_size=8, width=width, heads=4)
        for size in (16, 24, 32, 40, 48, 64)
        for width in (32, 48, 64, 96, 128)
    ]
    return min(candidates, key=lambda c: abs(torch.log(torch.tensor(lam_flops(c) / target))))


def build(tiny: bool):
    if tiny:
        cfg = pi0_config()
        lam_cfg = lara.LAMConfig(image_size=32, patch_size=8, width=32, heads=2, idm_layers=1, fdm_layers=1)
        return cfg, lam_cfg, 4, None
    cfg = pi0_config(width=512, expert_width=256, layers=6, image_size=64, patch_size=8, vision_layers=4,
                     chunk_size=10, action_dim=8, heads=8, vocab_size=1024)
    real_vla, real_lam = real_proportion()
    mid_vla = vla_flops(cfg)
    lam_cfg = matching_lam(mid_vla * real_lam / real_vla)
    return cfg, lam_cfg, 8, (real_vla, real_lam, mid_vla)


def training_batch(cfg, lam_cfg: lara.LAMConfig, batch_size: int) -> dict[str, torch.Tensor]:
    """A pi0 training batch with the frame pairs the LAM reads and the flow-matching noise drawn up front."""
    batch = pi0_batch(cfg, batch_size)
    size = lam_cfg.image_size
    batch["lam_frames"] = torch.randint(0, 256, (batch_size, 2, 3, size, size), dtype=torch.uint8)
    batch["noise"] = torch.randn(batch_size, cfg.chunk_size, cfg.max_action_dim)
    return batch


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


SYNCS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::equal", "aten::allclose")
"""Ops that read a tensor back to the host (`.item()`, `.tolist()`, `bool(t)` and `nonzero` run through these)."""


def profile(step, steps: int, top: int = 20) -> None:
    """Profile `steps` steps of each arm, alternating: self CPU ms per step by op, both arms, and host syncs."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    self_ms = {True: collections.Counter(), False: collections.Counter()}
    total_ms = {True: collections.Counter(), False: collections.Counter()}
    calls = {True: collections.Counter(), False: collections.Counter()}
    cpu = {True: 0.0, False: 0.0}
    for r in range(steps):
        for with_lara in ((True, False) if r % 2 else (False, True)):
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                cpu[with_lara] += step(with_lara)[1] * 1000 / steps
            for e in prof.key_averages():
                self_ms[with_lara][e.key] += e.self_cpu_time_total / 1000 / steps
                total_ms[with_lara][e.key] += e.cpu_time_total / 1000 / steps
                calls[with_lara][e.key] += e.count / steps
    print(f"profile, ms per step (mean of {steps}, profiler overhead included; CPU time of the profiled steps "
          f"{cpu[False]:.1f} without, {cpu[True]:.1f} with LARA):")
    for phase in ("## forward", "## backward", "## optimizer"):
        a, b = total_ms[False][phase], total_ms[True][phase]
        print(f"  {phase[3:]:10s} without {a:9.2f}  with {b:9.2f}  ({b - a:+.2f})")
    keys = [k for k in set(self_ms[False]) | set(self_ms[True]) if not k.startswith("## ")]
    print(f"  {'op (self time)':52s} {'without':>9s} {'calls':>6s} {'with':>9s} {'calls':>6s} {'with-without':>12s}")
    for k in sorted(keys, key=lambda k: -max(self_ms[False][k], self_ms[True][k]))[:top]:
        print(f"  {k[:52]:52s} {self_ms[False][k]:9.2f} {calls[False][k]:6.0f} {self_ms[True][k]:9.2f} "
              f"{calls[True][k]:6.0f} {self_ms[True][k] - self_ms[False][k]:+12.2f}")
    print("  host syncs per step: " + ", ".join(f"{k} {calls[False][k]:.0f} -> {calls[True][k]:.0f}" for k in SYNCS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny pi0 (seconds) instead of the mid-size config")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timed repeats (default 30 tiny, 10 mid)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after the timing, profile N steps of each arm (torch profiler): op groups, host syncs")
    args = parser.parse_args(argv)
    from transformers import PI0ForConditionalGeneration

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())

    torch.manual_seed(0)
    cfg, lam_cfg, batch_size, proportion = build(args.tiny)
    repeats = args.repeats or (30 if args.tiny else 10)
    base = PI0ForConditionalGeneration(cfg)
    never_attached = copy.deepcopy(base).eval()
    model = lara.attach(base, lara.LaraConfig(lam=lam_cfg))
    batch = training_batch(cfg, lam_cfg, batch_size)

    mid_lam = lam_flops(lam_cfg)
    if proportion is not None:
        real_vla, real_lam, mid_vla = proportion
        print(f"real: pi0 (transformers default PI0Config, 3.5B params) forward {real_vla / 1e9:.1f} GFLOP/sample, default LAM @224px {real_lam / 1e9:.2f} GFLOP/sample, "
              f"LAM/VLA {real_lam / real_vla:.3%}")
        print(f"mid:  pi0 forward {mid_vla / 1e9:.2f} GFLOP/sample, LAM (image {size}px, width {lam_cfg.width}) "
              f"{mid_lam / 1e9:.4f} GFLOP/sample, LAM/VLA {mid_lam / mid_vla:.3%}")
    print(model.trainable_parameters())

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)  # as the trainer's

    def step(with_lara: bool) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        with torch.profiler.record_function("## forward"):
            if with_lara:
                loss = model(**batch).loss
            else:
                with model.alignment_disabled():
                    loss = model(**batch).loss
        with torch.profiler.record_function("## backward"):
            loss.backward()
        with torch.profiler.record_function("## optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start, time.process_time() - cpu

    for _ in range(2):  # warm-up: allocator, first-call paths
        step(True), step(False)
    timed, cpu = {True: [], False: []}, {True: [], False: []}
    for r in range(repeats):
        for with_lara in ((True, False) if r % 2 else (False, True)):  # alternate the order
            wall, seconds = step(with_lara)
            timed[with_lara].append(wall)
            cpu[with_lara].append(seconds)
    train = median_ms(timed[True]) / median_ms(timed[False])
    train_cpu = median_ms(cpu[True]) / median_ms(cpu[False])
    print(f"train step (batch {batch_size}): without LARA {median_ms(timed[False]):.1f} ms, "
          f"with LARA {median_ms(timed[True]):.1f} ms (median of {repeats}); CPU time {median_ms(cpu[False]):.1f} ms, "
          f"{median_ms(cpu[True]):.1f} ms")

    if args.profile:
        profile(step, args.profile)

    detached = lara.detach(model).eval()
    never_attached.load_state_dict(detached.state_dict())  # same (trained) weights: only the attach history differs
    infer_inputs = {k: batch[k] for k in ("state", "input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
    noise = batch["noise"]
    with torch.no_grad():
        same = torch.equal(detached.sample_actions(noise=noise, **infer_inputs),
                           never_attached.sample_actions(noise=noise, **infer_inputs))
    print(f"detached and never-attached actions bitwise equal: {same}")
    latency = {"never": [], "detached": []}
    with torch.no_grad():
        for r in range(2 + repeats):
            for name in (("never", "detached") if r % 2 else ("detached", "never")):
                policy = never_attached if name == "never" else detached
                start = time.perf_counter()
                policy.sample_actions(noise=noise, **infer_inputs)
                if r >= 2:
                    latency[name].append(time.perf_counter() - start)
    infer = median_ms(latency["detached"]) / median_ms(latency["never"])
    print(f"inference (sample_actions): never attached {median_ms(latency['never']):.1f} ms, "
          f"detached {median_ms(latency['detached']):.1f} ms")
    print(f"overhead train={train:.3f} train_cpu={train_cpu:.3f} infer={infer:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
