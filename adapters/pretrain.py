"""Paradigm 1, pre-training: the LAM learns from frames first, then the VLA and the LAM train jointly.

    lara train pretrain_token_vla data.paths=[data/scripted_object] pretrain.video_paths=[data/videos] \
        pretrain.video_every=4

Phase 1 (RUN/lam): LAM-only reconstruction on the frames of the demonstrations and of the action-free
videos. Bidirectional alignment against a fresh LAM can collapse its latent (measured: a single code
in use), which is why the LAM goes first, as in the LARA release.
Phase 2 (RUN/joint): VLA + LAM with alignment; every `video_every`-th batch comes from the videos and
contributes the LAM and alignment losses only. Both phases resume from their own checkpoints.
"""

from __future__ import annotations

import lara

from .common import (baseline_step, build_vla, exporter, final_export, lara_step, load_data, video_data,
                     warm_up_lam)
from .config import RecipeConfig
from .trainer import Trainer, seed_everything


def run(cfg: RecipeConfig) -> dict:
    seed_everything(cfg.train.seed)
    data = load_data(cfg)
    videos = video_data(cfg, cfg.pretrain.video_paths) if cfg.pretrain.video_paths else None
    if cfg.baseline and videos is not None and cfg.pretrain.video_every:
        raise ValueError("baseline=true trains the VLA alone, which cannot use action-free videos: "
                         "set pretrain.video_every=0 (or baseline=false)")
    family, vla = build_vla(cfg, data)
    lam = None
    if not cfg.baseline:
        frames = [video_data(cfg, cfg.data.paths)] + ([videos] if videos is not None else [])
        lam = warm_up_lam(cfg, frames, cfg.pretrain.lam_steps, cfg.pretrain.lam_lr)

    seed_everything(cfg.train.seed + 1)  # phase 2's noise does not depend on whether phase 1 ran or resumed
    model = vla if cfg.baseline else lara.attach(vla, cfg.lara, lam=lam)
    sources = [data] + ([videos] if videos is not None and cfg.pretrain.video_every else [])
    trainer = Trainer(cfg.train, cfg.output_dir / "joint", model, baseline_step if cfg.baseline else lara_step,
                      datasets=sources, collate=family.collate, export=exporter(family, cfg.baseline),
                      video_every=cfg.pretrain.video_every if len(sources) > 1 else 0,
                      run_config=cfg.model_dump(mode="json"))
    checkpoint = trainer.fit()
    if trainer.ema is not None:
        trainer.ema.copy_to(trainer.unwrapped)
    final = final_export(cfg, family, trainer.unwrapped, data) if trainer.accelerator.is_main_process else None
    trainer.accelerator.wait_for_everyone()
    return {"checkpoint": checkpoint, "final": final, "samples": len(data), "videos": len(videos) if videos else 0}
