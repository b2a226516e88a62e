"""Latent-action pre-training (LAPA, Ye et al. 2024): the TokenVLA learns to predict a LAM's discrete codes of
(o_t, o_{t+k}) from o_t and the instruction alone, on action-free frames; `posttrain` then continues on actions.

    lara train latent_pretrain_token_vla latent.lam_from=runs/refined/final/lara data.paths=[data/videos]
    lara train posttrain_token_vla model.path=runs/latent_pretrain_token_vla/final/vla data.paths=[data/demos]

1. The LAM that labels: `latent.lam_from`, a saved LAM (any LARA artifact), or without it a fresh one trained
   first on the same frames (reconstruction, RUN/lam). A saved LAM comes first because this recipe is the
   downstream judge of LAM refinement: two runs differing only in `latent.lam_from` (the LAM before and after
   `refine_lam`) compare two LAMs with everything else equal, and no LAM training hides inside the judge.
2. The labels: every pair (o_t, o_{t+k}) of `data.paths` (video folders, LIBERO HDF5 or LeRobot; actions are
   ignored, pairs past an episode's end dropped) gets the LAM's n code indices (one per latent token), computed
   once with the LAM in eval mode, as LAPA labels its videos, into RUN/latent_codes.pt (reused on resume).
3. The VLA: K rows (the LAM's codebook size) are appended to the TokenVLA's vocabulary after the action bins
   (code c is the token `first_code_id + c`; `latent_codes` = K is in its saved config). A sample is
   [BOS, patches, prompt, c_1 .. c_n] with labels on the n code tokens only. Logged: `latent/accuracy` (the code
   tokens whose argmax over the K code rows is right) beside `latent/chance` (always predicting each position's
   most frequent code). `posttrain` with `model.path=RUN/final/vla` drops the code rows again
   (lara/vla/token_vla/processor.py says why) and learns actions from these weights. A TokenVLA that reads the
   robot state (`proprio_dim`) gets the neutral state here (token_vla.Processor.neutral_state: frames have none);
   its state projector's weights first learn in post-training, as OFT adds its proprio projector there.

Exports RUN/final/vla (the TokenVLA with its code rows), RUN/final/lam (the labeller, a LARA artifact),
RUN/final/latent_codes.json (label statistics and the last logged accuracy) and RUN/final/recipe.json.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

import lara

from .recipe import Recipe, Strict
from .run_folder import check_run_folder, holds_run_folder

if TYPE_CHECKING:
    from torch import nn

    from .config import RecipeConfig


class LatentConfig(Strict):
    lam_from: Path | None = Field(
        None, description="The LAM whose codes the VLA learns to predict: a LARA artifact folder (RUN/final/lara of "
        "pretrain, posttrain or refine_lam; RUN/final/lam of latent_pretrain). None: a fresh LAM (lara.lam) is "
        "trained first on the same frames for `lam_steps` steps (RUN/lam).",
    )
    lam_steps: int = Field(
        500, ge=0, description="Without lam_from: LAM-only steps on the frames (reconstruction) before labelling.",
    )
    lam_lr: float = Field(1e-3, gt=0, description="Learning rate of that LAM-only phase.")


def check(cfg: RecipeConfig) -> None:
    """Configs latent_pretrain cannot run (RecipeConfig's validator calls this)."""
    if cfg.model.family != "token_vla":
        raise ValueError(f"latent_pretrain trains a TokenVLA on LAM code tokens; model.family is "
                         f"'{cfg.model.family}': set model.family=token_vla")
    if cfg.baseline:
        raise ValueError("latent_pretrain has no baseline (it trains no LARA); set baseline=false")
    if cfg.latent.lam_from is None and cfg.lara.lam.quantizer == "none":
        raise ValueError("latent_pretrain predicts a LAM's discrete codes, and lara.lam.quantizer='none' has none: "
                         "set lara.lam.quantizer to vq, nsvq or fsq, or give latent.lam_from")
    if cfg.latent.lam_from is None and not cfg.latent.lam_steps:
        raise ValueError("latent.lam_steps=0 without latent.lam_from would label the frames with an untrained LAM: "
                         "give latent.lam_from (a saved LAM) or latent.lam_steps > 0")


# no alignment: lara.lam is the LAM it trains without latent.lam_from
RECIPE = Recipe(name="latent_pretrain", section="latent", config=LatentConfig,
                about="Latent-action pre-training only.",
                ignores=("pretrain", "posttrain", "refine", "lara.backbone", "lara.align", "lara.align_weight",
                         "lara.lam_weight", "lara.fdm_weight"),
                check=check)


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
    # what training needs, imported when it runs: the config reads this module for RECIPE alone (lara.adapters.recipe)
    import torch

    from lara.data import EpisodeDataset
    from lara.model import DTYPES
    from lara.outputs import recorded_paths
    from lara.vla import token_vla
    from lara.vla.backbones import check_vla_path
    from lara.vla.batch import cast
    from lara.vla.token_vla.tokenizer import IGNORE_INDEX, collate, encode_text, prompt

    from .common import export_final, exporter, record_split
    from .latent_codes import CodePredictor, Labelled, code_statistics, codes_of, labeller
    from .metrics import read_metrics
    from .trainer import Trainer, make_accelerator, seed_everything

    finished = check_run_folder(cfg)  # before anything is built or written
    if cfg.model.path is not None:  # a run folder or a LAM artifact: one line naming the VLA folder, before the LAM
        check_vla_path(cfg.model.path, family=cfg.model.family)
    seed_everything(cfg.train.seed)
    # action-free whatever the source holds; a pair past an episode's end has no latent action to label
    frames = EpisodeDataset(cfg.data.model_copy(update={"action_free": True, "statistics_path": None,
                                                        "drop_incomplete": True}))
    frames.check_one_image_size()  # two sizes with data.image_size=null: one line now, not at the first batch
    record_split(cfg, data=frames)  # a label-scarce side of a source: which episodes were read (RUN/data_split.json)
    lam = labeller(cfg, frames)
    num_codes = lam.quantizer.num_codes

    seed_everything(cfg.train.seed + 1)  # the VLA's weights do not depend on whether a LAM was trained here
    dtype = DTYPES[cfg.model.dtype]
    vla, _ = token_vla.load(cfg.model.path, cfg.model.build, dtype, (cfg.data.camera, *cfg.data.extra_cameras),
                            latent_codes=num_codes)
    processor = token_vla.Processor(vla.config, dtype=dtype)
    accelerator = make_accelerator(cfg.train, cfg.output_dir)
    codes = codes_of(cfg, lam, frames, accelerator)
    statistics = code_statistics(codes, num_codes)
    accelerator.print(f"labelled {statistics['pairs']} pairs with {statistics['tokens_per_pair']} of {num_codes} codes "
                      f"each: code usage {statistics['code_usage']:.2f}, chance accuracy {statistics['chance']:.3f}")
    if statistics["chance"] == 1.0:
        warnings.warn(f"the LAM gives every pair the same codes ({statistics['pairs']} pairs): a collapsed LAM, "
                      "whose codes the VLA learns to predict without looking; check it "
                      "(lara.benchmarks.probes.lam_health) or give another latent.lam_from", UserWarning, stacklevel=2)
    first = vla.first_code_id

    def collate_codes(samples: list[dict]) -> dict:
        examples = []
        for sample in samples:
            ids, code_ids = encode_text(prompt(sample["instruction"])), (first + sample["latent_codes"]).tolist()
            examples.append((ids + code_ids, [IGNORE_INDEX] * len(ids) + code_ids))  # loss on the codes only
        batch = {**collate(examples), "pixel_values": processor.pixel_values(samples)}
        if vla.config.proprio_dim:  # action-free frames have no robot state: the neutral one (Processor.neutral_state)
            batch["proprio"] = processor.neutral_state(len(samples))
        return cast(batch, dtype)  # model.dtype

    def code_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        loss, accuracy = model(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["pixel_values"],
                               batch.get("proprio"))
        return loss, {"latent/accuracy": accuracy.detach(),
                      "latent/chance": torch.tensor(statistics["chance"], device=loss.device)}

    export = exporter(cfg, vla_of=lambda model: model.vla)
    trainer = Trainer(cfg.train, cfg.output_dir, CodePredictor(vla), code_step, datasets=[Labelled(frames, codes)],
                      collate=collate_codes, export=export, run_config=cfg.record(),
                      accelerator=accelerator)
    checkpoint = trainer.fit()

    def also(model: nn.Module, final: Path) -> None:
        """The labelling LAM and how its codes were learnt."""
        lara.save_lam(lam, final / "lam")
        logged = read_metrics(cfg.output_dir / "metrics.jsonl")
        statistics["accuracy_last_logged"] = next((r["latent/accuracy"] for r in reversed(logged)
                                                   if "latent/accuracy" in r), None)
        statistics["lam"] = str(cfg.latent.lam_from or cfg.output_dir / "lam")
        (final / "latent_codes.json").write_text(json.dumps(recorded_paths(statistics), indent=1))

    final = export_final(cfg, trainer.checkpointer, export, None, finished, also=also) or cfg.output_dir / "final"
    return {"checkpoint": checkpoint, "final": final, "pairs": len(frames), **statistics}
