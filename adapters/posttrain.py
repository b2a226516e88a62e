"""Paradigm 2, post-training: a pretrained VLA fine-tuned on robot demonstrations with LARA added.

    lara train posttrain_token_vla model.path=runs/pretrained/vla data.paths=[data/libero_object]
    lara train posttrain_pi0 baseline=true            # the identical run without LARA

Full fine-tuning or LoRA (`model.lora`, through peft). The LAM continues from `refine.lam_from` (a LARA
artifact, e.g. from `pretrain`) or starts fresh; a fresh LAM first trains alone on the demonstrations'
frames (and those of `posttrain.lam_warmup_paths`, action-free) for `posttrain.lam_warmup_steps` steps
(RUN/lam), since alignment against an untrained LAM can collapse its latent. Writes RUN/checkpoints/step_N
(resumable), RUN/metrics.jsonl, RUN/final/{vla, lara}, and RUN/data_split.json where a source is split.
"""

from __future__ import annotations

import lara

from .common import (baseline_step, build_vla, export_final, exporter, lara_step, load_data, record_split, video_data,
                     warm_up_lam)
from .config import RecipeConfig
from .run_folder import check_run_folder, holds_run_folder
from .trainer import Trainer, seed_everything


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
    finished = check_run_folder(cfg)  # before anything is built or written
    seed_everything(cfg.train.seed)
    data = load_data(cfg)
    # a fresh LAM's warm-up reads posttrain.lam_warmup_paths too (action-free frames, reconstruction only)
    fresh_lam = not cfg.baseline and not cfg.refine.lam_from and cfg.posttrain.lam_warmup_steps
    frames = video_data(cfg, cfg.posttrain.lam_warmup_paths) if fresh_lam and cfg.posttrain.lam_warmup_paths else None
    record_split(cfg, data=data, lam_warmup=frames)
    vla, processor, tokenizer = build_vla(cfg, data.statistics)
    export = exporter(cfg, tokenizer, data.statistics)
    if cfg.baseline:
        model = vla
    else:
        if cfg.refine.lam_from:
            lam = lara.load_lam(cfg.refine.lam_from)
        else:
            # the demonstrations with their actions: the LAM's action head (lara.lam.action_horizon) learns too
            lam = warm_up_lam(cfg, [data] + ([frames] if frames is not None else []), cfg.posttrain.lam_warmup_steps,
                              cfg.posttrain.lam_lr)
        model = lara.attach(vla, cfg.lara, lam=lam)
        print(model.trainable_parameters())
    trainer = Trainer(cfg.train, cfg.output_dir, model, baseline_step if cfg.baseline else lara_step,
                      datasets=[data], collate=processor, export=export,
                      run_config=cfg.record())
    checkpoint = trainer.fit()
    final = export_final(cfg, trainer.checkpointer, export, data.statistics, finished)
    return {"checkpoint": checkpoint, "final": final, "samples": len(data)}
