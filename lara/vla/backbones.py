"""Every backbone LARA knows, in one plain table (like lerobot's `policies/<name>/` and peft's per-architecture
defaults): its checkpoints' `model_type`, its alignment spec (which module's output is the policy hidden state,
how wide it is, which tokens are the action positions) and the folder `lara/vla/<name>/` that holds its glue.

A folder exposes:

    config(**build), BUILD_KEYS        the model config `model.build` keywords make, and those keywords
                                       (None and []: loaded from model.path only)
    load(path, build, dtype, cameras, statistics, dataset_name) -> (model, tokenizer or None)
    Processor(model_config, statistics, tokenizer=None, dtype=torch.float32)
                                       stateless: reader samples -> the model's inputs + the LARA keys
    load_policy(directory, device)     a saved model as a `lara.policy.Policy`
    checkpointed_modules(model)        what `train.gradient_checkpointing` recomputes

From the table: the spec lookup (`lara.specs`), the recipes' `model.family` choices and `model.build` keys
(`lara.adapters.config`), the one export (`export_vla`) and policy loading (`load_policy`). Adding a backbone
is one folder and one row. The table imports no model code: `lara.attach` stays light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Callable

STATISTICS_KEY = "libero"  # the default key of a dataset in dataset_statistics.json (data.dataset_name)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    layer: Callable[[object], str] | None  # model config -> module path
    hidden_size: Callable[[object], int] | None  # model config -> width of that module's output
    positions: str  # last_k | action_tokens | mask | all
    chunk: Callable[[object], int] | None = None  # for last_k
    action_token_ids: Callable[[object], tuple[int, int]] | None = None  # for action_tokens: first, last id
    insert_at: int = 1  # where image patches sit in the hidden sequence relative to the labels


@dataclass(frozen=True)
class Backbone:
    name: str
    model_type: str  # config.json `model_type` of its checkpoints
    spec: BackboneSpec
    keep_gathered: str | None = None  # FSDP: name part of blocks whose keys/values another block reads (KV cache)

    @property
    def glue(self) -> ModuleType:
        """The folder `lara/vla/<name>/` (imported on first use: it brings transformers)."""
        return import_module(f"lara.vla.{self.name}")


def _text_config(cfg: object) -> object:
    return getattr(cfg, "text_config", None) or getattr(cfg, "llm_config", None) or cfg


def _llm_layer(cfg: object) -> str:
    """LLM layer 3/4 deep (24 of 32 in OpenVLA-7B: Spatial Forcing's choice on OpenVLA-OFT)."""
    return f"language_model.model.layers.{(3 * _text_config(cfg).num_hidden_layers) // 4}"


def _token_vla_action_ids(cfg) -> tuple[int, int]:
    """The 256 action bins end where LAM code rows (latent-action pre-training) begin, if any."""
    end = cfg.text_config.vocab_size - getattr(cfg, "latent_codes", 0)
    return end - cfg.n_action_bins, end - 1


# The flow-matching action experts (pi0, pi0.5): the LARA release aligns pi0.5's action-expert final output at
# the action tokens. `model.dit` returns the expert's hidden states after its final norm; its last `chunk_size`
# tokens are the action chunk (pi0 puts its state token before them, pi0.5 has none).
_ACTION_EXPERT = dict(layer=lambda cfg: "model.dit", hidden_size=lambda cfg: cfg.dit_config.hidden_size,
                      positions="last_k", chunk=lambda cfg: cfg.chunk_size)

BACKBONES: dict[str, Backbone] = {
    # lara.vla.TokenVLA: OpenVLA's layout and tokenization at any size
    "token_vla": Backbone("token_vla", "lara_token_vla", BackboneSpec(
        "token_vla", layer=_llm_layer, hidden_size=lambda cfg: cfg.text_config.hidden_size,
        positions="action_tokens", action_token_ids=_token_vla_action_ids)),
    # transformers PI0ForConditionalGeneration; its prefix LM hands keys/values to the expert through a KV cache
    "pi0": Backbone("pi0", "pi0", BackboneSpec("pi0", **_ACTION_EXPERT), keep_gathered=".vlm.language_model."),
    # OpenVLA / OpenVLA-OFT (remote code): action tokens are the last 256 ids of Llama-2's 32000-token vocabulary
    "openvla": Backbone("openvla", "openvla", BackboneSpec(
        "openvla", layer=_llm_layer, hidden_size=lambda cfg: _text_config(cfg).hidden_size,
        positions="action_tokens", action_token_ids=lambda cfg: (31744, 31999))),
    # transformers PI05ForConditionalGeneration (pi0.5): pi0's layout, the state discretised into the prompt
    "pi05": Backbone("pi05", "pi05", BackboneSpec("pi05", **_ACTION_EXPERT), keep_gathered=".vlm.language_model."),
}
BY_MODEL_TYPE = {b.model_type: b for b in BACKBONES.values()}


def backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_keys(name: str) -> list[str]:
    """The keywords `model.build` may hold for a backbone: its `config` function's (none when it is loaded only).
    A transformers config keeps any unknown keyword silently, so recipes check these."""
    return list(backbone(name).glue.BUILD_KEYS)


def export_vla(vla, directory: Path, tokenizer=None, statistics=None, dataset_name: str = STATISTICS_KEY) -> None:
    """The VLA in its native format (`save_pretrained`; a peft model saves its adapter), the tokenizer it was
    loaded with (OpenVLA: its processor and remote code files) and the training statistics as
    dataset_statistics.json (lara.data.statistics, OpenVLA's layout): the folder alone is a policy."""
    from lara.data.statistics import save_statistics

    directory = Path(directory)
    vla.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    if statistics is not None:
        save_statistics(statistics, directory, dataset_name)


def model_type_of(directory: Path) -> str | None:
    """config.json's `model_type`; an InputError naming the file when it is not a JSON object."""
    from lara.errors import InputError

    try:
        return json.loads((directory / "config.json").read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise InputError(f"{directory / 'config.json'} is not a JSON object ({error}); expected the config.json that "
                         "save_pretrained writes: re-export the VLA or pass another checkpoint") from None


def find_vla_dir(path: str | Path) -> Path:
    """The exported VLA folder (one with config.json) that `path` names: the folder itself, or the VLA inside a
    training run's folders (RUN -> RUN/final/vla; RUN/final and RUN/checkpoints/step_N -> their vla/).
    Raises MissingPath (a FileNotFoundError) naming the folder to pass when there is none to pick."""
    from lara.errors import MissingPath

    path = Path(path)
    for candidate in (path, path / "vla", path / "final" / "vla"):
        if (candidate / "config.json").is_file():
            return candidate
    if not path.is_dir():
        raise MissingPath(f"{path} holds no config.json (no such folder); expected a VLA saved by save_pretrained "
                          "(e.g. RUN/final/vla of a training run) or the run folder RUN.")
    if (path / "vla" / "adapter_config.json").is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        raise MissingPath(f"{path / 'vla'} holds a LoRA adapter, not a full VLA (checkpoints keep the adapter; "
                          f"the final export has it merged): pass {run / 'final' / 'vla'} once the run finished.")
    steps = sorted(p for p in (path / "checkpoints").glob("step_*") if (p / "vla" / "config.json").is_file())
    if steps:
        raise MissingPath(f"{path} has no final export (final/vla: the run has not finished); pass a "
                          f"checkpoint's VLA instead, e.g. the newest: {steps[-1] / 'vla'}")
    raise MissingPath(f"{path} holds no config.json, nor vla/config.json or final/vla/config.json; expected a "
                      "VLA saved by save_pretrained (e.g. RUN/final/vla of a training run) or the run folder RUN.")


def check_vla_path(path: str | Path, key: str = "model.path", family: str | None = None) -> Path:
    """`path` as a VLA folder to train from (one with the config.json of save_pretrained), or one line saying what
    it is instead and which folder to give: a run folder (RUN, RUN/final, RUN/checkpoints/step_N), a LARA or LAM
    artifact (lara_config.json: `refine.lam_from` takes those), a file, or nothing. `family`: a backbone that can
    also be built from model.build, which the message then offers."""
    from lara.checkpoint import CONFIG_NAME
    from lara.errors import InputError, MissingPath

    path = Path(path)
    expected = "expected a VLA folder saved by save_pretrained (config.json and its weights), e.g. RUN/final/vla"
    if family is not None and build_keys(family):
        expected += f" (or leave {key} unset to build a {family} from model.build)"
    if (path / "config.json").is_file():
        return path
    if not path.exists():
        raise MissingPath(f"{key}={path}: no such folder; {expected}")
    if not path.is_dir():
        raise InputError(f"{key}={path} is a file; {expected}")
    if (path / CONFIG_NAME).is_file():
        raise InputError(f"{key}={path} holds a LARA artifact ({CONFIG_NAME}: projector and LAM), not a VLA; "
                         f"{expected} (a LAM to refine goes to refine.lam_from)")
    for inside, what in ((path / "vla", "a run's export (RUN/final or a checkpoint)"),
                         (path / "final" / "vla", "a training run folder")):
        if (inside / "config.json").is_file():
            raise InputError(f"{key}={path} is {what}, not a VLA; {expected}: give {key}={inside}")
    raise MissingPath(f"{key}={path} holds no config.json; {expected}")


def load_policy(path: str | Path, device="cpu"):
    """A policy from a directory written by `save_pretrained` (LARA detached: VLA weights only), or a run folder
    holding one (`find_vla_dir`), by its config.json `model_type` (a TokenVLA when it names no
    backbone of the table)."""
    from safetensors import SafetensorError

    from lara.errors import InputError, UserError

    from lara.data.statistics import STATISTICS_FILE, check_statistics_file

    path = find_vla_dir(path)
    found = BY_MODEL_TYPE.get(model_type_of(path), BACKBONES["token_vla"])
    for statistics in (path / STATISTICS_FILE, path.parent / STATISTICS_FILE):  # beside the VLA, or RUN/final's
        if statistics.is_file():
            check_statistics_file(statistics)  # NaN or swapped bounds: refused here, naming the file
    try:
        return found.glue.load_policy(path, device)
    except UserError:  # already says what is missing and what to do
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:  # a damaged or foreign weights file
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: the VLA cannot be loaded ({reason}); the files are damaged or not a "
                         "save_pretrained export of this config: re-export the VLA or pass another checkpoint") from None
