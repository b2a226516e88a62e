"""What the three recipes share: data, the VLA (with LoRA), LARA or the baseline, losses and exports."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import lara
from lara.data import EpisodeDataset
from lara.data.statistics import save_statistics
from lara.errors import InputError
from lara.model import DTYPES, LARA_KEYS, LaraModel, latent_spread
from lara.outputs import recorded_paths
from lara.vla.backbones import backbone, check_vla_path, export_vla
from lara.vla.batch import lara_inputs

from . import checkpoints as ckpt
from . import model_card
from .config import LoraConfig, RecipeConfig
from .run_folder import main_process

if TYPE_CHECKING:
    from .checkpointer import Checkpointer


def load_data(cfg: RecipeConfig) -> EpisodeDataset:
    """The demonstrations of a recipe that trains the policy on robot actions (pretrain's joint phase, posttrain,
    refine_lam): a source with no action at all is refused (a labelled source some of whose episodes are read
    action-free still trains on the others)."""
    data = EpisodeDataset(cfg.data)
    data.check_one_image_size()  # two sizes with data.image_size=null: one line now, not at the first batch
    if data.statistics is None:
        formats = sorted({source.format for source in data.sources})
        why = "data.action_free=true" if cfg.data.action_free else f"no episode of {formats} has actions"
        raise InputError(f"data.paths={[str(p) for p in cfg.data.paths]}: {why}, and the {cfg.recipe} recipe trains "
                         "the policy on robot actions (its loss would be 0). Give demonstrations with actions "
                         "(LIBERO HDF5, LeRobot); action-free frames go to pretrain.video_paths, or to "
                         "latent_pretrain, which needs none")
    return data


def video_data(cfg: RecipeConfig, paths: list[Path]) -> EpisodeDataset:
    """Action-free frames cut like the demonstrations (same camera, frame gap and size)."""
    data = EpisodeDataset(cfg.data.model_copy(update={"paths": paths, "action_free": True, "statistics_path": None}))
    data.check_one_image_size()
    return data


def record_split(cfg: RecipeConfig, **roles: EpisodeDataset | None) -> None:
    """RUN/data_split.json: for each role (data, video, lam_warmup) the label-scarce sides its sources read
    (SourceSpec.labelled_per_task), with their episode ids; nothing is written when no source is split."""
    split = {role: data.split for role, data in roles.items() if data is not None and data.split}
    if split and main_process():
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
        (cfg.output_dir / "data_split.json").write_text(json.dumps(recorded_paths(split), indent=1))


def apply_lora(model: nn.Module, lora: LoraConfig | None) -> nn.Module:
    if lora is None:
        return model
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    peft_config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=lora.target_modules)
    return get_peft_model(model, peft_config)


def enable_gradient_checkpointing(vla: nn.Module) -> None:
    """transformers' activation checkpointing of the VLA's blocks, non-reentrant: the reentrant kind runs the
    block's forward under no_grad, so a hidden state LARA's hook captured inside a block would carry no gradient
    (the alignment would silently stop training the VLA; tests/adapters/test_scale.py shows it)."""
    kwargs = {"use_reentrant": False}
    if not getattr(vla, "supports_gradient_checkpointing", False):
        raise InputError(f"train.gradient_checkpointing=true: {type(vla).__name__} does not support transformers' "
                         "activation checkpointing; set train.gradient_checkpointing=false")
    if hasattr(vla, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        vla.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        vla.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def native_bf16() -> bool:
    """Whether this machine computes bf16 in hardware: a GPU that supports it, or a CPU with AVX512-BF16 / AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def warn_without_native_bf16(cfg: RecipeConfig) -> None:
    """bf16 without bf16 instructions runs emulated: correct, but slower than fp32."""
    asked = [name for name, value in (("model.dtype", cfg.model.dtype), ("lara.dtype", cfg.lara.dtype),
                                      ("train.mixed_precision", cfg.train.mixed_precision)) if value == "bf16"]
    if asked and not native_bf16():
        where = (torch.cuda.get_device_name() if torch.cuda.is_available()
                 else f"a CPU ({torch.backends.cpu.get_cpu_capability()})")
        warnings.warn(f"{', '.join(asked)}=bf16 on {where} without native bf16: it runs emulated, slower than "
                      "fp32; set them to fp32 / 'no' on this machine", UserWarning, stacklevel=2)


def refuse_fp16_without_a_gpu(cfg: RecipeConfig) -> None:
    """fp16 weights trained on a CPU (no GPU's loss scaling) overflow to inf and NaN within steps (issue 38: 37 of
    48 exported tensors non-finite): refused before the model is built."""
    asked = [name for name, value in (("model.dtype", cfg.model.dtype), ("lara.dtype", cfg.lara.dtype),
                                      ("train.mixed_precision", cfg.train.mixed_precision)) if value == "fp16"]
    if asked and not torch.cuda.is_available():
        raise InputError(f"{', '.join(asked)}=fp16 on a machine without a GPU: fp16 training on a CPU overflows to "
                         "NaN weights; use fp32 (or bf16) here")


def build_vla(cfg: RecipeConfig, statistics) -> tuple[nn.Module, Callable[[list[dict]], dict], object]:
    """The VLA of `model.family` (loaded or built, frozen, checkpointed, with LoRA), its stateless processor
    (samples -> batch) and the tokenizer it was loaded with (None when it has none), which the export saves."""
    glue = backbone(cfg.model.family).glue
    refuse_fp16_without_a_gpu(cfg)
    warn_without_native_bf16(cfg)
    dtype = DTYPES[cfg.model.dtype]
    if cfg.model.path is not None:  # a run folder or a LAM artifact: one line naming the VLA folder to give
        check_vla_path(cfg.model.path, family=cfg.model.family)
    vla, tokenizer = glue.load(cfg.model.path, cfg.model.build, dtype, (cfg.data.camera, *cfg.data.extra_cameras),
                               statistics, cfg.data.dataset_name)
    processor = glue.Processor(vla.config, statistics, tokenizer, dtype)
    if cfg.model.freeze:
        vla.requires_grad_(False)
    if cfg.train.gradient_checkpointing:
        for module in glue.checkpointed_modules(vla):
            enable_gradient_checkpointing(module)
    return apply_lora(vla, cfg.model.lora), processor, tokenizer


def lara_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    out = model(**batch)
    return out.loss, dict(out["lara"])


def baseline_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    """The VLA alone on the same batches (LARA keys dropped): the ablation without LARA."""
    if batch.get("lam_action_free"):
        raise ValueError("the baseline has no loss on action-free (video) batches; set pretrain.video_every=0")
    out = model(**{k: v for k, v in batch.items() if k not in LARA_KEYS})
    return out.loss, {"base": out.loss.detach()}


def lam_step(lam: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    out = lam(batch["lam_frames"].float() / 255.0, batch.get("lam_actions"), batch["lam_valid"],
              batch.get("lam_action_mask"))  # actions where the data has them: the action head learns too
    parts = {f"lam/{k}": v.detach() for k, v in {**out.losses, **out.stats}.items() if k != "total"}
    parts["lam/z_std"] = latent_spread(out.z.detach().flatten(1).float(), batch["lam_valid"].float())
    return out.losses["total"], parts


def lam_inputs(samples: list[dict]) -> dict:
    """The LAM warm-up's batch (`lara_inputs`), which may mix demonstrations with action-free frames (e.g.
    posttrain.lam_warmup_paths): a sample without actions gets zero lam_actions with lam_action_mask False,
    which the LAM's action loss leaves out exactly (lara/lam.py: per-step mask, then a mean over the samples
    with any unmasked step). VLA batches keep `lara_inputs`, which refuses such a mix."""
    shapes = [s["lam_actions"].shape for s in samples if "lam_actions" in s]  # (k, A) each
    if not shapes or len(shapes) == len(samples):
        return lara_inputs(samples)
    k, dim = shapes[0]
    missing = {"lam_actions": torch.zeros(k, dim), "lam_action_mask": torch.zeros(k, dtype=torch.bool)}
    return lara_inputs([s if "lam_actions" in s else {**s, **missing} for s in samples])


def warm_up_lam(cfg: RecipeConfig, frames: list[EpisodeDataset], steps: int, lr: float) -> lara.LatentActionModel:
    """A fresh LAM trained alone on frames (reconstruction, and its action head where a sample has actions)
    for `steps` steps in RUN/lam (resumable). Bidirectional alignment against an untrained LAM can collapse
    its latent (measured: a single code in use), which is why the LARA release trains its LAM first."""
    from .trainer import Trainer

    lam = lara.LatentActionModel(cfg.lara.lam)
    if not steps:
        return lam
    # the LAM alone is small: DDP (or one process) even when the joint phase shards with FSDP
    lam_train = cfg.train.model_copy(update={"steps": steps, "warmup_steps": 0, "ema_decay": None, "fsdp": False})
    phase = Trainer(lam_train, cfg.output_dir / "lam", lam, lam_step,
                    datasets=[torch.utils.data.ConcatDataset(frames)], collate=lam_inputs,
                    export=lambda m, d: lara.save_lam(m, d / "lam"), lr=lr, run_config=cfg.record())
    phase.fit()
    phase.accelerator.free_memory()
    return phase.checkpointer.finish()


def exporter(cfg: RecipeConfig, tokenizer=None, statistics=None,
             vla_of: Callable[[nn.Module], nn.Module] | None = None):
    """The one export, of checkpoints and of RUN/final: `vla/` natively with its tokenizer and training statistics
    (`lara.vla.backbones.export_vla`: the folder alone is a policy) and, with LARA, the artifact `lara/` (projector
    + LAM). `final=True` merges LoRA into the weights (what `lara eval` and `lara serve` load); checkpoints keep
    the adapter. `vla_of`: where the VLA sits in the trained module (default: the LaraModel's base)."""
    def export(model: nn.Module, directory: Path, final: bool = False) -> None:
        vla = vla_of(model) if vla_of is not None else (model.base if isinstance(model, LaraModel) else model)
        if final and hasattr(vla, "merge_and_unload"):  # peft: fold the adapters into the weights
            vla = vla.merge_and_unload()
        export_vla(vla, directory / "vla", tokenizer, statistics, cfg.data.dataset_name)
        if isinstance(model, LaraModel):
            lara.save(model, directory / "lara")
    return export


def export_final(cfg: RecipeConfig, checkpointer: Checkpointer, export, statistics, finished: bool,
                 also: Callable[[nn.Module, Path], None] | None = None) -> Path | None:
    """RUN/final from the trained (EMA) model, which the checkpointer hands over whole on the main process (None is
    returned on the others): `export(final=True)`, the statistics and recipe it was trained with, then
    `also(model, final)`, the manifest, and the model card (RUN/final/README.md, adapters/model_card.py).

    A run that was finished before (adapters/run_folder.py) and trained nothing now keeps its records as they
    are: re-exporting would rewrite them without new weights. One whose newest checkpoint was corrupt retrains
    its last steps, exactly, and exports them again."""
    final = cfg.output_dir / "final"
    if finished and not checkpointer.trained:
        checkpointer.accelerator.print(f"{cfg.output_dir} holds this run, finished before: nothing to train; {final} "
                                       "is left as it is")
        return final

    def write(model: nn.Module, final: Path) -> None:
        export(model, final, final=True)
        if statistics is not None:  # the run's record (data.statistics_path reads it); the VLA has its own
            save_statistics(statistics, final, cfg.data.dataset_name)
        (final / "recipe.json").write_text(json.dumps(cfg.record(), indent=1))
        if also is not None:
            also(model, final)
        # what a re-run verifies before it says there is nothing to do; the card changes with each evaluation
        ckpt.write_manifest(final, leave_out=(model_card.CARD,))
        model_card.write_card(final)

    return checkpointer.export_final(final, write)
