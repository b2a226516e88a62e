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

import hashlib
import json
import warnings
from pathlib import Path

import torch
from torch import nn

import lara
from lara.data import EpisodeDataset
from lara.errors import InputError, MissingPath
from lara.model import DTYPES
from lara.outputs import recorded_paths, replacing
from lara.vla import token_vla
from lara.vla.backbones import check_vla_path
from lara.vla.batch import cast
from lara.vla.token_vla import splice_after_bos
from lara.vla.token_vla.tokenizer import IGNORE_INDEX, collate, encode_text, prompt

from .common import export_final, exporter, record_split, warm_up_lam
from .config import RecipeConfig
from .metrics import read_metrics
from .run_folder import check_run_folder, holds_run_folder
from .trainer import Trainer, make_accelerator, seed_everything


class CodePredictor(nn.Module):
    """The TokenVLA on code tokens: forward -> (cross-entropy on the code tokens, their accuracy). A module of its
    own so that DDP sees the forward pass (the VLA's `lm_forward` is not its `forward` under the 'l1' head)."""

    def __init__(self, vla: nn.Module):
        super().__init__()
        self.vla = vla

    def forward(self, input_ids, attention_mask, labels, pixel_values,
                proprio=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vla.lm_forward(input_ids, pixel_values, attention_mask, labels, proprio)
        extra = out.logits.shape[1] - input_ids.shape[1]  # image patches spliced in after BOS
        targets = splice_after_bos(labels, extra, IGNORE_INDEX)[:, 1:]  # (B, T + P - 1): what each position predicts
        mask = targets != IGNORE_INDEX  # the code tokens
        first = self.vla.first_code_id
        guess = out.logits[:, :-1][mask][:, first:].argmax(-1) + first  # (M,): argmax over the K code rows
        return out.loss, (guess == targets[mask]).float().mean()


class Labelled(torch.utils.data.Dataset):
    """The frames' samples, each with its LAM codes `latent_codes` (n,)."""

    def __init__(self, data: EpisodeDataset, codes: torch.Tensor):
        self.data, self.codes = data, codes

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        return {**self.data[index], "latent_codes": self.codes[index]}

    def epoch_order(self, seed: int, epoch: int) -> list[int] | None:
        return self.data.epoch_order(seed, epoch)


def labeller(cfg: RecipeConfig, frames: EpisodeDataset) -> lara.LatentActionModel:
    """The frozen LAM whose codes are the targets: loaded from `latent.lam_from`, or trained here first."""
    source = cfg.latent.lam_from
    if source is None:
        lam = warm_up_lam(cfg, [frames], cfg.latent.lam_steps, cfg.latent.lam_lr)
    else:
        if not (Path(source) / "lara.safetensors").is_file():
            raise MissingPath(f"latent.lam_from={source} holds no lara.safetensors: give a LARA artifact folder "
                              "(RUN/final/lara of pretrain, posttrain or refine_lam, or RUN/final/lam)")
        lam = lara.load_lam(source)
    if not hasattr(lam.quantizer, "num_codes"):
        raise InputError(f"the LAM of latent.lam_from={source} has quantizer '{lam.cfg.quantizer}', which gives no "
                         "discrete codes to predict; give a LAM with a vq, nsvq or fsq quantizer")
    return lam.eval().requires_grad_(False)


def fingerprint(lam: nn.Module) -> str:
    """sha256 of the LAM's weights: the cached labels belong to exactly this LAM."""
    digest = hashlib.sha256()
    for name, tensor in sorted(lam.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stack_pairs(samples: list[dict]) -> torch.Tensor:
    return torch.stack([s["lam_frames"] for s in samples])  # (B, 2, 3, H, W) uint8


@torch.no_grad()
def label(lam: lara.LatentActionModel, frames: EpisodeDataset, batch_size: int, device: torch.device,
          num_workers: int = 0) -> torch.Tensor:
    """The LAM's code indices of every pair (N, n), in sample order."""
    lam.to(device)
    loader = torch.utils.data.DataLoader(frames, batch_size=batch_size, collate_fn=stack_pairs, num_workers=num_workers)
    codes = []
    for pairs in loader:  # (B, 2, 3, H, W) uint8
        z = lam.encode(pairs.to(device).float() / 255.0)  # (B, n, d)
        codes.append(lam.quantizer(z)[1]["indices"].long().cpu())  # (B, n)
    return torch.cat(codes)


def code_statistics(codes: torch.Tensor, num_codes: int) -> dict:
    """How varied the labels are, and the accuracy of always predicting each position's most frequent code."""
    counts = torch.stack([torch.bincount(column, minlength=num_codes) for column in codes.T]).float()  # (n, K)
    pooled = counts.sum(0) / counts.sum()
    entropy = -(pooled * pooled.clamp(min=1e-12).log()).sum()
    return {"pairs": len(codes), "tokens_per_pair": codes.shape[1], "codes": num_codes,
            "code_usage": float((pooled > 0).float().mean()), "perplexity": float(entropy.exp()),
            "chance": float((counts.max(1).values / len(codes)).mean())}


def codes_of(cfg: RecipeConfig, lam: lara.LatentActionModel, frames: EpisodeDataset, accelerator) -> torch.Tensor:
    """The labels, from RUN/latent_codes.pt when it holds this LAM's codes of these frames, else computed there
    (by the main process; the others wait and read them)."""
    path, key = cfg.output_dir / "latent_codes.pt", fingerprint(lam)
    cached = torch.load(path, weights_only=True) if path.is_file() else None
    fresh = cached is None or cached["lam"] != key or len(cached["codes"]) != len(frames)
    if fresh and accelerator.is_main_process:
        codes = label(lam, frames, cfg.train.batch_size, accelerator.device, cfg.train.num_workers)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as staging:
            torch.save({"lam": key, "codes": codes}, staging)
    accelerator.wait_for_everyone()
    return torch.load(path, weights_only=True)["codes"]


@holds_run_folder
def run(cfg: RecipeConfig) -> dict:
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
