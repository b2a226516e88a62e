"""Recipe configuration: what `lara train <preset> key=value ...` validates before anything runs.

A preset is a YAML file in `adapters/configs/` (or any path) holding a `RecipeConfig`. Overrides use
dotted keys (`train.steps=200 lara.align_weight=0.05 model.lora.r=8`), values parsed as YAML. Unknown
presets and keys get a "did you mean".
"""

from __future__ import annotations

import difflib
import warnings
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from lara.config import LaraConfig
from lara.data.config import LiberoDataConfig
from lara.errors import InputError, MissingPath
from lara.outputs import recorded_paths
from lara.vla.backbones import BACKBONES, backbone, build_keys

from .recipe import Strict
from .recipes import RECIPES, declared

PRESETS_DIR = Path(__file__).parent / "configs"


class WandbConfig(Strict):
    """The wandb tracker's settings, used while `wandb` is in train.trackers (as by default)."""

    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="wandb mode: 'offline' (default: files under RUN/wandb, `wandb sync` later), "
        "'online' (needs network and a login) or 'disabled' (no wandb run, as if train.trackers left it out).",
    )
    project: str = Field("lara", description="Project the trackers file the run under: wandb's project, and so "
                         "tensorboard's folder RUN/trackers/<project>, mlflow's experiment, trackio's project, ...")
    name: str | None = Field(None, description="wandb run name; None: the run folder's name.")


def _install_hint(package: str) -> str:
    """`pip install 'lara-vla[name]'` where lara-vla has an extra of that name (pyproject.toml), else the package."""
    try:
        extras = metadata("lara-vla").get_all("Provides-Extra") or []
    except PackageNotFoundError:  # run from a source tree that is not installed
        extras = []
    return f"pip install 'lara-vla[{package}]'" if package in extras else f"pip install {package}"


class TrainConfig(Strict):
    """The optimisation loop, shared by every recipe (adapters/trainer.py)."""

    steps: int = Field(1000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Samples per process per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.95), description="AdamW betas, each in [0, 1).")
    fused_adamw: bool = Field(
        False, description="Run AdamW as torch's fused kernel (CPU and CUDA) instead of its foreach loop: one pass "
        "over each weight instead of one per update op, faster (benchmarks/perf/optimizer.py), but rounded "
        "differently, so a run is not bit-identical to the same run with foreach.",
    )
    schedule: Literal["constant", "cosine"] = Field("cosine", description="LR schedule after the warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Linear LR warm-up steps.")
    clip_grad_norm: float | None = Field(1.0, gt=0, description="Clip the global gradient norm; None: no clipping.")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="Keep an exponential moving average of the trainable weights with this "
        "decay (e.g. 0.999); the exported model then uses the averaged weights. None: no EMA.",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="accelerate mixed precision; 'auto': bf16 on a GPU that supports it, else 'no'.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute the VLA's blocks in the backward pass instead of keeping their activations "
        "(transformers' activation checkpointing, non-reentrant): less memory, ~30 % more compute. The hidden state "
        "LARA aligns is the one the loss's graph uses either way.",
    )
    fsdp: bool = Field(
        False, description="Shard the weights, gradients and optimizer state over the processes "
        "(torch's FSDP2 `fully_shard`: each VLA block, the LAM, and the rest as one root unit) instead of DDP. "
        "Launch as for DDP (`accelerate launch --multi_gpu` / torchrun); checkpoints are sharded "
        "(torch.distributed.checkpoint) and RUN/final is the gathered full model.",
    )
    checkpoint_every: int = Field(500, ge=1, description="Write a checkpoint every N optimizer steps (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="How many of the newest checkpoints to keep.")
    log_every: int = Field(10, ge=1, description="Log averaged losses every N optimizer steps (to train.trackers).")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the weights' initialisation, the data order and the "
                      "model's noise (numpy's range: 0 <= seed < 2**32).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    resume: bool = Field(True, description="Continue from the newest intact checkpoint in the run folder, if any.")
    allow_config_change: bool = Field(
        False, description="Resume an unfinished run folder although its checkpoints were written with a different "
        "training-relevant config (refused otherwise, listing the differences; adapters/run_folder.py says which "
        "fields count); the change is recorded in RUN/config_changes.jsonl. A finished run is never changed.",
    )
    progress: bool = Field(True, description="Show a progress bar (main process only).")
    trackers: list[str] = Field(
        ["jsonl", "wandb"], description="Where the logged values go: 'jsonl' (RUN/metrics.jsonl, written whether "
        "listed or not: studies and reports read it) and any of accelerate's experiment trackers (tensorboard, "
        "wandb, mlflow, trackio, ...; `Accelerator(log_with=...)`), e.g. [jsonl, tensorboard]. Trackers that "
        "keep files keep them in the run folder: tensorboard and aim in RUN/trackers, wandb in RUN/wandb "
        "(offline unless train.wandb.mode=online). The run's config is stored as its hyperparameters.",
    )
    wandb: WandbConfig = Field(default_factory=WandbConfig, description="Weights & Biases logging.")

    @property
    def accelerate_trackers(self) -> list[str]:
        """The trackers accelerate runs (`log_with`): train.trackers without jsonl, and without a disabled wandb."""
        disabled = {"wandb"} if self.wandb.mode == "disabled" else set()
        return [name for name in dict.fromkeys(self.trackers) if name not in {"jsonl", *disabled}]

    @field_validator("trackers")
    @classmethod
    def _known_trackers(cls, names: list[str]) -> list[str]:
        if set(names) <= {"jsonl", "wandb"}:
            return names  # the default's names: accelerate's import (seconds) is not needed to know them
        from accelerate.utils import LoggerType

        known = [name for name in LoggerType.list() if name != LoggerType.ALL.value]
        for name in names:
            if name != "jsonl" and name not in known:
                close = difflib.get_close_matches(name, ["jsonl", *known], n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"unknown tracker '{name}'.{hint} Trackers: jsonl, {', '.join(known)}")
        return names

    @model_validator(mode="after")
    def _trackers_installed(self) -> TrainConfig:
        if not self.accelerate_trackers:
            return self
        from accelerate.tracking import get_available_trackers

        installed = {str(name) for name in get_available_trackers()}
        for name in self.accelerate_trackers:
            if name not in installed:
                raise ValueError(f"'{name}' of train.trackers is not installed: {_install_hint(name)}, or leave it "
                                 "out of train.trackers")
        return self

    @model_validator(mode="after")
    def _checkpoints_fall_on_logged_steps(self) -> TrainConfig:
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"train.checkpoint_every ({self.checkpoint_every}) must be a multiple of train.log_every "
                             f"({self.log_every}), so a resumed run logs the same averages as an uninterrupted one")
        return self

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> TrainConfig:
        if self.warmup_steps > self.steps:  # legal (a run may be resumed with more steps), rarely meant
            warnings.warn(f"train.warmup_steps={self.warmup_steps} exceeds train.steps={self.steps}: the learning rate "
                          f"only reaches {self.steps / self.warmup_steps:.2g} x train.lr by the end; lower "
                          "train.warmup_steps or raise train.steps", UserWarning, stacklevel=_callers_level())
        return self


def _callers_level() -> int:
    """The stacklevel of the first frame outside pydantic and this file: a validator's warning names the line that
    built the config (load_recipe's caller, a script's TrainConfig(...)), not pydantic's internals."""
    import inspect
    import pydantic

    skipped = (str(Path(pydantic.__file__).parent), __file__)
    level, frame = 1, inspect.currentframe().f_back  # the validator's frame is level 1 for warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(skipped):
        level, frame = level + 1, frame.f_back
    return level


class LoraConfig(Strict):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules to adapt (peft's `target_modules`; 'all-linear' as OpenVLA's fine-tuning).",
    )


class ModelConfig(Strict):
    """The VLA a recipe trains."""

    family: Literal[tuple(BACKBONES)] = Field(
        description=f"A backbone of the table in lara/vla/backbones.py: {', '.join(BACKBONES)} (its folder "
        "lara/vla/<family>/ says what it is).",
    )
    path: Path | None = Field(
        None, description="A local pretrained model directory (save_pretrained layout). None: build a new model "
        "from `build` (every family but openvla, which needs its weights).",
    )
    build: dict[str, Any] = Field(
        default_factory=dict, description="Size of a newly built model: keyword arguments of "
        "the family's `config` (lara.vla.<family>.config, e.g. token_vla_config: width, layers, image_size).",
    )
    dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="dtype the VLA is loaded (or built) in: 'bf16' as OpenVLA's finetune.py and openpi load "
        "their models (half the memory of fp32: OpenVLA-7B's weights take 15 GB instead of 30). The LAM and "
        "projector have their own, lara.dtype.",
    )
    lora: LoraConfig | None = Field(None, description="Fine-tune through LoRA adapters (peft); None: full fine-tuning.")
    freeze: bool = Field(False, description="Freeze the whole VLA (LAM refinement: only the projector and LAM learn).")

    @model_validator(mode="after")
    def _weights(self) -> ModelConfig:
        if self.path is None and not build_keys(self.family):
            raise ValueError(f"model.family='{self.family}' needs model.path: a local checkpoint directory (OpenVLA: "
                             "e.g. a snapshot of openvla/openvla-7b); it cannot be built from scratch")
        return self

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        """A model built from `build` is sized before training starts: the family's config function refuses sizes
        that cannot build (model.build.layers=0, an image smaller than a patch) as an InputError."""
        if self.path is not None or not build_keys(self.family) or set(self.build) - set(build_keys(self.family)):
            return self  # loaded, not built; or an unknown key, which _known_build_keys names
        try:
            backbone(self.family).glue.config(**self.build)
        except (ValueError, TypeError) as error:  # InputError is a ValueError; a transformers config's own checks
            raise ValueError(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__) from None
        return self

    @model_validator(mode="after")
    def _known_build_keys(self) -> ModelConfig:
        """transformers configs store unknown keywords silently (`widht=64` would build the default width)."""
        if not self.build:
            return self
        known = build_keys(self.family)
        for key in self.build:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean 'model.build.{close[0]}'?" if close else ""
                keys = ", ".join(known) or f"none: model.family='{self.family}' is loaded from model.path"
                raise ValueError(f"unknown key 'model.build.{key}'.{hint} Keys at model.build ({self.family}): {keys}")
        return self


class _RecipeConfig(Strict):
    """One training run: recipe, VLA, data, LARA settings and the loop; `RecipeConfig` adds each recipe's section."""

    recipe: Literal[tuple(RECIPES)] = Field(
        description="Which paradigm runs ('latent_pretrain': LAPA's latent-action pre-training of a TokenVLA).",
    )
    output_dir: Path = Field(Path("outputs/run"), description="Run folder: checkpoints, metrics.jsonl, trackers, "
                             "exports.")
    model: ModelConfig = Field(description="The VLA.")
    data: LiberoDataConfig = Field(description="Demonstrations (LIBERO HDF5) and how samples are cut.")
    lara: LaraConfig = Field(default_factory=LaraConfig, description="LAM and alignment settings (lara.LaraConfig).")
    baseline: bool = Field(False, description="Alignment off: the identical recipe without LARA (ablations).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The optimisation loop.")

    def record(self) -> dict:
        """The config as a run records it (RUN/final/recipe.json, checkpoints' trainer_state.json, wandb): JSON
        values, a path as given when relative and relative to the project when absolute (`lara.outputs.recorded`),
        never the machine's absolute layout."""
        return recorded_paths(self.model_dump(mode="json"))

    @model_validator(mode="after")
    def _action_head_fits_the_frame_gap(self) -> RecipeConfig:
        k, gap = self.lara.lam.action_horizon, self.data.frame_gap
        if k > gap:
            raise ValueError(f"lara.lam.action_horizon ({k}) exceeds data.frame_gap ({gap}): the LAM's action head "
                             f"predicts the actions between o_t and o_{{t+k}}; set lara.lam.action_horizon<={gap}")
        return self

    @model_validator(mode="after")
    def _fits_the_recipe(self) -> RecipeConfig:
        check = declared(self.recipe).check  # what the recipe cannot run (e.g. refine_lam with FSDP)
        if check is not None:
            check(self)
        return self


# every recipe's section, in the table's order, after the fields all recipes share
RecipeConfig = create_model(
    "RecipeConfig", __base__=_RecipeConfig, __module__=__name__,
    __doc__="One training run: recipe, VLA, data, LARA settings, the loop and each recipe's own section.",
    **{r.section: (r.config, Field(default_factory=r.config, description=r.about)) for r in map(declared, RECIPES)})


# -------------------------------------------------------------------------------------------------
# Presets and overrides


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise MissingPath(f"preset file {path} not found")
        return path
    if (PRESETS_DIR / f"{name}.yaml").is_file():
        return PRESETS_DIR / f"{name}.yaml"
    close = difflib.get_close_matches(name, available_presets(), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise InputError(f"unknown preset '{name}'.{hint} Presets: {', '.join(available_presets())} (or a .yaml path)")


def _field_names(model: type[BaseModel], keys: list[str]) -> list[str]:
    """Field names at the dotted position `keys` of the config tree ([] when it is a free-form dict)."""
    for key in keys:
        annotation = model.model_fields[key].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = [a for a in candidates if issubclass(a, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def apply_override(raw: dict, assignment: str) -> None:
    """`a.b.c=value` into the nested dict `raw`, checking each key against RecipeConfig's fields."""
    if "=" not in assignment:
        raise InputError(f"override '{assignment}' must look like key=value, e.g. train.steps=100")
    dotted, value = assignment.split("=", 1)
    keys, node = dotted.strip().split("."), raw
    for depth, key in enumerate(keys):
        names = _field_names(RecipeConfig, keys[:depth])
        if names and key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean '{'.'.join(keys[:depth] + [close[0]])}'?" if close else ""
            where = ".".join(keys[:depth]) or "the top level"
            raise InputError(f"unknown key '{dotted}'.{hint} Keys at {where}: {', '.join(names)}")
        if depth == len(keys) - 1:
            try:
                node[key] = yaml.safe_load(value)
            except yaml.YAMLError as error:
                problem = getattr(error, "problem", None) or str(error).splitlines()[0]
                raise InputError(f"override '{assignment}': the value is not valid YAML ({problem}); write it as "
                                 "YAML, e.g. data.paths=[data/a,data/b] or model.build={width: 64}") from None
        else:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise InputError(f"'{'.'.join(keys[: depth + 1])}' is a value, not a section; cannot set '{dotted}'")
            node = child


def load_recipe(preset: str, overrides: list[str] = ()) -> RecipeConfig:
    """Read a preset, apply `key=value` overrides, validate. Errors name the preset and the bad keys."""
    path = preset_path(preset)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError as error:
        raise InputError(f"preset {path} is not UTF-8 text ({error.reason} at byte {error.start}); give a YAML file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"preset {path} is not valid YAML{where} ({problem}); fix the file") from None
    if not isinstance(raw, dict):
        raise InputError(f"preset {path} holds a {type(raw).__name__}, expected a mapping of config sections "
                         "(recipe:, model:, data:, train:, ...)")
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return RecipeConfig.model_validate(raw)
    except ValidationError as error:
        # a validator's own message reads alone; one across sections (loc ()) names its fields itself
        problems = [f"{'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg'].removeprefix('Value error, ')}"
                    for e in error.errors()]
        raise InputError(f"invalid config from {path} with overrides {list(overrides)}: " + "; ".join(problems)) from None
