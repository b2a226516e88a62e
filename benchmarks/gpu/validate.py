"""The GPU check at real sizes: pi0 (3.5B) and an OpenVLA-7B-shaped TokenVLA, bf16, LoRA and full fine-tuning,
each with and without LARA: step time, samples/s and peak memory, side by side in one process.

    bash benchmarks/gpu/validate.sh                                   # one GPU, <= 10 min on an H100 / H200
    python -m lara.benchmarks.gpu.validate --dry-run --out /tmp/v.json   # tiny sizes on a CPU (tests)

Nothing is downloaded: the models are built from configs with random weights, directly in bf16 on the GPU.
- `pi0-3b`: transformers' default PI0Config (PaliGemma-3B + the Gemma action expert), one 224 px camera,
  48 text tokens, chunks of 50.
- `openvla-7b`: lara.vla.TokenVLA with Llama-2-7B (4096 wide, 32 layers, 32000 ids, action tokens
  31744..31999) and a SigLIP-so400m tower at 224 px (OpenVLA fuses DINOv2-L with it: its ~0.3B are missing).
The LAM is the LARA release's size: a 4-layer IDM and a 12-layer FDM of width 512 on 224 px frames (16 px
patches), 65M parameters, kept in fp32 (lara.dtype's default) beside the bf16 VLA. LoRA: rank 32 on all
linear layers (OpenVLA's finetune.py). The two arms of a case share the model and optimizer and alternate
step by step; "without LARA" is `alignment_disabled()` (the VLA's own forward; the LAM sits in memory).
Peak memory is `max_memory_allocated` over each arm's steps (no peak on a CPU). An out-of-memory case is
recorded as such and the others still run. Last line: `gpu-validate ok=<k>/<n> ...`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import lara
from lara.adapters.common import enable_gradient_checkpointing
from lara.vla.backbones import backbone
from lara.vla.pi0 import pi0_batch, pi0_config
from lara.vla.token_vla import TokenVLA, TokenVLAConfig, preprocess_images, token_vla_config
from lara.vla.token_vla.tokenizer import build_example, collate

MODELS = ("pi0-3b", "openvla-7b")
MODES = ("lora", "full")


def lam_config(dry: bool) -> lara.LAMConfig:
    if dry:
        return lara.LAMConfig(image_size=32, patch_size=8, width=32, heads=2, idm_layers=1, fdm_layers=1)
    return lara.LAMConfig(image_size=224, patch_size=16, width=512, heads=8, idm_layers=4, fdm_layers=12)


def build(name: str, dry: bool, batch_size: int, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The VLA (its weights created in bf16 on `device`) and one training batch of its own inputs."""
    from transformers import PI0Config, PI0ForConditionalGeneration

    if name == "pi0-3b":
        cfg = pi0_config(chunk_size=10) if dry else PI0Config()
        make = PI0ForConditionalGeneration
    elif dry:
        cfg, make = token_vla_config(width=32, layers=4, image_size=32, vocab_size=1024), TokenVLA
    else:
        vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                      image_size=224, patch_size=14)
        cfg, make = TokenVLAConfig(vision_config=vision, text_config=dict(pad_token_id=0)), TokenVLA  # Llama-2-7B
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # model.dtype: bf16, without an fp32 copy on the way
    try:
        with device:
            model = make(cfg)
    finally:
        torch.set_default_dtype(previous)
    if name == "pi0-3b":  # inputs on the CPU (seeded generator), then moved
        batch = pi0_batch(cfg, batch_size, text_len=8 if dry else 48)
    else:
        ids = model.action_tokenizer.encode(np.random.default_rng(0).uniform(-1, 1, (batch_size, 7)))
        batch = collate([build_example("pick up the black bowl and place it on the plate", row) for row in ids])
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (batch_size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, generator=g)
        batch["pixel_values"] = preprocess_images(images, cfg.image_size)
    batch = {k: v.to(device, torch.bfloat16) if v.is_floating_point() else v.to(device) for k, v in batch.items()}
    return model, batch


def lora(model: torch.nn.Module) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=32, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(name: str, mode: str, args, device: torch.device) -> dict:
    batch_size = args.batch_size or (2 if args.dry_run else {"pi0-3b": 16, "openvla-7b": 8}[name])
    torch.manual_seed(0)
    vla, batch = build(name, args.dry_run, batch_size, device)
    if args.gradient_checkpointing:  # as train.gradient_checkpointing does (pi0: its SigLIP tower)
        for module in backbone("pi0" if name == "pi0-3b" else "token_vla").glue.checkpointed_modules(vla):
            enable_gradient_checkpointing(module)
    if mode == "lora":
        vla = lora(vla)
    lam_cfg = lam_config(args.dry_run)
    model = lara.attach(vla, lara.LaraConfig(lam=lam_cfg)).train()
    size = lam_cfg.image_size
    frames = torch.randint(0, 256, (batch_size, 2, 3, size, size), dtype=torch.uint8).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    count = lambda module, trainable=False: sum(p.numel() for p in module.parameters()  # noqa: E731
                                                if p.requires_grad or not trainable)

    def step(with_lara: bool) -> tuple[float, float | None]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        start = time.perf_counter()
        if with_lara:
            loss = model(**batch, lam_frames=frames).loss
        else:
            with model.alignment_disabled():
                loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        elapsed = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        return elapsed, peak

    for with_lara in (False, True) * args.warmup:  # allocator, kernels, AdamW's moments
        step(with_lara)
    timed: dict[bool, list[tuple[float, float | None]]] = {False: [], True: []}
    for r in range(args.repeats):
        for with_lara in ((False, True) if r % 2 == 0 else (True, False)):
            timed[with_lara].append(step(with_lara))
    result = {"model": name, "mode": mode, "batch_size": batch_size,
              "vla_params": count(model.base), "trainable_vla_params": count(model.base, trainable=True),
              "lara_params": count(model.lam) + count(model.projector)}
    for arm, with_lara in (("base", False), ("lara", True)):
        seconds = statistics.median(t for t, _ in timed[with_lara])
        peaks = [p for _, p in timed[with_lara] if p is not None]
        result[arm] = {"step_ms": 1000 * seconds, "samples_per_s": batch_size / seconds,
                       "peak_mib": max(peaks) if peaks else None}
    result["step_ratio"] = result["lara"]["step_ms"] / result["base"]["step_ms"]
    if result["base"]["peak_mib"]:
        result["memory_ratio"] = result["lara"]["peak_mib"] / result["base"]["peak_mib"]
    return result


def describe(r: dict) -> str:
    if "error" in r:
        return f"{r['model']:<11} {r['mode']:<5} {r['error']}"
    memory = (f"peak {r['base']['peak_mib']:.0f} -> {r['lara']['peak_mib']:.0f} MiB ({r['memory_ratio']:.3f}x)"
              if r["base"]["peak_mib"] else "peak n/a (CPU)")
    return (f"{r['model']:<11} {r['mode']:<5} batch {r['batch_size']:>2}: step {r['base']['step_ms']:.0f} -> "
            f"{r['lara']['step_ms']:.0f} ms ({r['step_ratio']:.3f}x), {r['base']['samples_per_s']:.1f} -> "
            f"{r['lara']['samples_per_s']:.1f} samples/s, {memory}; VLA {r['vla_params'] / 1e6:.1f}M "
            f"(trainable {r['trainable_vla_params'] / 1e6:.1f}M), LARA {r['lara_params'] / 1e6:.1f}M")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny models on whatever device (CPU): the tests")
    parser.add_argument("--out", type=Path, default=Path("results/gpu/validate.json"))
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: lora, full")
    parser.add_argument("--batch-size", type=int, default=None, help="default: pi0 16, openvla 8 (dry run 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each arm")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of each arm, interleaved")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute the VLA's blocks")
    args = parser.parse_args(argv)
    models, modes = args.models.split(","), args.modes.split(",")
    unknown = [m for m in models if m not in MODELS] + [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown models/modes {unknown}; models: {', '.join(MODELS)}; modes: {', '.join(MODES)}")
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: the real sizes need one (a 7B model in bf16 with AdamW needs ~60 GB); "
                     "--dry-run runs the same code at tiny sizes on a CPU")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import transformers

    report = {"dry_run": args.dry_run, "device": torch.cuda.get_device_name() if device.type == "cuda" else
              platform.processor() or "cpu", "torch": torch.__version__, "transformers": transformers.__version__,
              "gradient_checkpointing": args.gradient_checkpointing, "cases": []}
    started = time.perf_counter()
    for name in models:
        for mode in modes:
            try:
                result = run_case(name, mode, args, device)
            except torch.OutOfMemoryError:
                result = {"model": name, "mode": mode, "error": "out of memory"}
            report["cases"].append(result)
            print(describe(result), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    report["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    done = [c for c in report["cases"] if "error" not in c]
    ratios = " ".join(f"{c['model']}/{c['mode']}={c['step_ratio']:.3f}x" for c in done)
    print(f"gpu-validate ok={len(done)}/{len(report['cases'])} step_ratio {ratios} "
          f"({report['seconds']:.0f} s; {args.out})")
    return 0 if len(done) == len(report["cases"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
