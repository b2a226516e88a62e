"""Paradigm 1, pre-training: the LAM learns from frames first, then the VLA and the LAM train jointly.

    lara train pretrain_token_vla data.paths=[data/scripted_object] pretrain.video_paths=[data/videos] \
        pretrain.video_every=4

Phase 1 (RUN/lam): the LAM alone on the demonstrations, with their actions for its action head
(lara.lam.action_horizon), and on the frames of the action-free videos (reconstruction only), as posttrain's
warm-up. Bidirectional alignment against a fresh LAM can collapse its latent (measured: a single code in use),
which is why the LAM goes first, as in the LARA release; reconstruction alone collapses it too on scripted robot
frames (z spread 0.0001-0.001 through a whole run, docs/probe.md "Is the LAM alive?"), which the action head prevents.
Phase 2 (RUN/joint): VLA + LAM with alignment; every `video_every`-th batch comes from the videos and
contributes the LAM and alignment losses only. Both phases resume from their own checkpoints. Where a source
is split (SourceSpec.labelled_per_task), RUN/data_split.json records which episodes each role read.
"""

from __future__ import annotations

import lara

from .common import (baseline_step, build_vla, export_final, exporter, lara_step, load_data, record_split,
                     video_data, warm_up_lam)
from .config import RecipeConfig
from .run_folder import check_run_folder, holds_run_folder
from .trainer import Trainer, seed_everything


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
    finished = check_run_folder(cfg)  # before anything is built or written
    seed_everything(cfg.train.seed)
    data = load_data(cfg)
    videos = video_data(cfg, cfg.pretrain.video_paths) if cfg.pretrain.video_paths else None
    record_split(cfg, data=data, video=videos)
    vla, processor, tokenizer = build_vla(cfg, data.statistics)
    export = exporter(cfg, tokenizer, data.statistics)
    lam = None
    if not cfg.baseline:
        lam = warm_up_lam(cfg, [data] + ([videos] if videos is not None else []), cfg.pretrain.lam_steps,
                          cfg.pretrain.lam_lr)

    seed_everything(cfg.train.seed + 1)  # phase 2's noise does not depend on whether phase 1 ran or resumed
    model = vla if cfg.baseline else lara.attach(vla, cfg.lara, lam=lam)
    sources = [data] + ([videos] if videos is not None and cfg.pretrain.video_every else [])
    trainer = Trainer(cfg.train, cfg.output_dir / "joint", model, baseline_step if cfg.baseline else lara_step,
                      datasets=sources, collate=processor, export=export,
                      video_every=cfg.pretrain.video_every if len(sources) > 1 else 0,
                      run_config=cfg.record())
    checkpoint = trainer.fit()
    final = export_final(cfg, trainer.checkpointer, export, data.statistics, finished)
    return {"checkpoint": checkpoint, "final": final, "samples": len(data), "videos": len(videos) if videos else 0}
