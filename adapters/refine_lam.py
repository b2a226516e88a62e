"""Paradigm 3, LAM refinement: the LAM learns from action trajectories and the alignment signal.

    lara train refine_lam refine.lam_from=runs/pre/final/lara model.path=runs/pre/final/vla

The LAM (from `refine.lam_from`, or new) gets an action head A(z) -> a_{t:t+k} trained on the robot
actions, and the alignment loss against a VLA (frozen by default: `model.freeze`) pulls its latents
towards what the policy represents. The refined LAM is exported (RUN/final/lara, read with
`lara.load_lam`) and judged by a linear probe of its latents against the true action chunks on
held-out episodes, before and after: RUN/final/probe.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

import lara

from .recipe import Recipe, Strict
from .run_folder import check_run_folder, holds_run_folder

if TYPE_CHECKING:
    from lara.data import EpisodeDataset

    from .config import RecipeConfig


class RefineConfig(Strict):
    lam_from: Path | None = Field(
        None, description="A LARA artifact folder (lara_config.json + lara.safetensors) whose LAM is refined; "
        "None: the LAM is trained from scratch.",
    )
    probe_samples: int = Field(512, ge=16, description="Held-out samples for the latent-action linear probe.")


def check(cfg: RecipeConfig) -> None:
    """Configs refine_lam cannot run (RecipeConfig's validator calls this)."""
    if cfg.train.fsdp:
        raise ValueError("refine_lam trains the LAM beside a frozen VLA and probes it on one process: run it "
                         "without train.fsdp (DDP)")
    if cfg.baseline:
        raise ValueError("refine_lam has no baseline: it trains the LAM, which the baseline does not have; "
                         "set baseline=false")


RECIPE = Recipe(name="refine_lam", section="refine", config=RefineConfig,
                about="LAM refinement only.", ignores=("pretrain", "posttrain", "latent"), check=check)


def with_action_head(cfg: RecipeConfig) -> lara.LatentActionModel:
    """The LAM to refine, with an action head over the frame gap (added to a saved LAM that has none)."""
    k = cfg.data.frame_gap
    if cfg.refine.lam_from is None:
        lam_cfg = cfg.lara.lam
        return lara.LatentActionModel(lam_cfg if lam_cfg.action_horizon else lam_cfg.model_copy(update={"action_horizon": k}))
    saved = lara.load_lam(cfg.refine.lam_from)
    if saved.action_head is not None:
        return saved
    lam = lara.LatentActionModel(saved.cfg.model_copy(update={"action_horizon": k}))
    missing, unexpected = lam.load_state_dict(saved.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("action_head.") for name in missing), (missing, unexpected)
    return lam


def probe(lam: lara.LatentActionModel, data: EpisodeDataset, samples: int) -> float:
    """R^2 of a ridge probe z -> a_{t:t+k} (normalised), fit on the first 70% of evenly spread samples
    (earlier episodes) and scored on the rest (later episodes)."""
    import numpy as np
    import torch

    from lara.linear_probe import ridge_r2

    picks = [int(i) for i in np.linspace(0, len(data) - 1, min(samples, len(data)))]
    items = [data[i] for i in picks]
    items = [s for s in items if bool(s["lam_valid"]) and bool(s["lam_action_mask"].all())]
    if len(items) < 16:
        raise ValueError(f"only {len(items)} probe samples have a full future window; the data are too short for "
                         f"frame_gap={data.config.frame_gap}")
    frames = torch.stack([s["lam_frames"] for s in items]).float() / 255.0
    actions = torch.stack([s["lam_actions"] for s in items]).flatten(1)
    was_training = lam.training
    lam.eval()
    device = next(lam.parameters()).device
    with torch.no_grad():
        z = torch.cat([lam.encode(chunk.to(device)).flatten(1).cpu() for chunk in frames.split(64)])
    lam.train(was_training)
    cut = int(0.7 * len(z))
    return ridge_r2(z[:cut], actions[:cut], z[cut:], actions[cut:])


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
    # what training needs, imported when it runs: the config reads this module for RECIPE alone (lara.adapters.recipe)
    from .common import build_vla, export_final, exporter, lara_step, load_data
    from .trainer import Trainer, seed_everything

    finished = check_run_folder(cfg)  # before anything is built or written
    seed_everything(cfg.train.seed)
    data = load_data(cfg)
    vla, processor, tokenizer = build_vla(cfg, data.statistics)
    export = exporter(cfg, tokenizer, data.statistics)
    lam = with_action_head(cfg)
    before = probe(lam, data, cfg.refine.probe_samples)
    model = lara.attach(vla, cfg.lara, lam=lam)
    print(model.trainable_parameters())
    trainer = Trainer(cfg.train, cfg.output_dir, model, lara_step, datasets=[data], collate=processor,
                      export=export, run_config=cfg.record())
    checkpoint = trainer.fit()
    trained = trainer.checkpointer.finish()  # with the EMA's weights: the probe judges the weights that are exported
    result = {"checkpoint": checkpoint, "probe_r2_before": before,
              "probe_r2_after": probe(trained.lam, data, cfg.refine.probe_samples)}
    write_probe = lambda model, final: (final / "probe.json").write_text(json.dumps(  # noqa: E731
        {k: result[k] for k in ("probe_r2_before", "probe_r2_after")}, indent=1))
    final = export_final(cfg, trainer.checkpointer, export, data.statistics, finished, also=write_probe)
    if final is not None:
        result["final"] = final
    return result
