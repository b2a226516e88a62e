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

from typing import TYPE_CHECKING

from pydantic import Field

import lara
from lara.data.config import SourceEntry

from .recipe import Recipe, Strict
from .run_folder import check_run_folder, holds_run_folder

if TYPE_CHECKING:
    from .config import RecipeConfig


class PosttrainConfig(Strict):
    lam_warmup_steps: int = Field(
        0, ge=0, description="With a fresh LAM (no refine.lam_from): LAM-only steps on the demonstrations' frames "
        "before joint training (0: none). Alignment against an untrained LAM can collapse its latent.",
    )
    lam_lr: float = Field(1e-3, gt=0, description="Learning rate of the LAM warm-up.")
    lam_warmup_paths: list[SourceEntry] = Field(
        default_factory=list, description="Action-free frames added to the fresh LAM's warm-up beside the "
        "demonstrations' (any source, paths or entries as in data.paths, read action-free; e.g. the unlabelled "
        "side of a label-scarce split): reconstruction only, the action head learns on the demonstrations. "
        "Read only when a fresh LAM warms up (lam_warmup_steps > 0, no refine.lam_from, not baseline).",
    )


# it reads refine.lam_from (the LAM it continues), not refine.probe_samples
RECIPE = Recipe(name="posttrain", section="posttrain", config=PosttrainConfig,
                about="Post-training only.", ignores=("pretrain", "refine.probe_samples", "latent"))


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
    # what training needs, imported when it runs: the config reads this module for RECIPE alone (lara.adapters.recipe)
    from .common import (baseline_step, build_vla, export_final, exporter, lara_step, load_data, record_split,
                         video_data, warm_up_lam)
    from .trainer import Trainer, seed_everything

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
