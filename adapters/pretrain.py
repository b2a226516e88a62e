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

from typing import TYPE_CHECKING

from pydantic import Field

import lara
from lara.data.config import SourceEntry

from .recipe import Recipe, Strict
from .run_folder import check_run_folder, holds_run_folder

if TYPE_CHECKING:
    from .config import RecipeConfig


class PretrainConfig(Strict):
    lam_steps: int = Field(
        500, ge=0, description="LAM-only steps before joint training, on the demonstrations (reconstruction, and "
        "their actions for the LAM's action head where lara.lam.action_horizon > 0) and on the frames of "
        "`video_paths` (reconstruction only). Without them bidirectional alignment can collapse a fresh LAM's latent.",
    )
    lam_lr: float = Field(1e-3, gt=0, description="Learning rate of the LAM-only phase.")
    video_paths: list[SourceEntry] = Field(
        default_factory=list, description="Action-free data, any source (video folders, LIBERO HDF5, LeRobot; "
        "paths or {path, format, weight, labels} entries as in data.paths): used in the LAM phase, and in the "
        "joint phase for the LAM and alignment losses only.",
    )
    video_every: int = Field(
        0, ge=0, description="In the joint phase, every N-th micro-batch comes from `video_paths` (0: none).",
    )


def check(cfg: RecipeConfig) -> None:
    """Configs pretrain cannot run (RecipeConfig's validator calls this)."""
    if cfg.baseline and cfg.pretrain.video_paths and cfg.pretrain.video_every:
        raise ValueError("baseline=true trains the VLA alone, which cannot use action-free videos: "
                         "set pretrain.video_every=0 (or baseline=false)")


RECIPE = Recipe(name="pretrain", section="pretrain", config=PretrainConfig,
                about="Pre-training only.", ignores=("posttrain", "refine", "latent"), check=check)


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
    # what training needs, imported when it runs: the config reads this module for RECIPE alone (lara.adapters.recipe)
    from .common import (baseline_step, build_vla, export_final, exporter, lara_step, load_data, record_split,
                         video_data, warm_up_lam)
    from .trainer import Trainer, seed_everything

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
