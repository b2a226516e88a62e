"""`lara.save` / `lara.load`: the LARA artifact is the projector and the LAM only.

    dir/lara_config.json     the resolved LaraConfig
    dir/lara.safetensors     projector.* and lam.* tensors (a frozen vision model is not included)

The VLA itself is saved natively, by its own `save_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from lara.config import LaraConfig
from lara.errors import MissingPath
from lara.lam import LatentActionModel
from lara.model import LaraModel, attach

CONFIG_NAME, WEIGHTS_NAME = "lara_config.json", "lara.safetensors"


def lara_state_dict(model: LaraModel) -> dict:
    state = {f"projector.{k}": v for k, v in model.projector.state_dict().items()}
    state.update({f"lam.{k}": v for k, v in model.lam.state_dict().items()})
    return state


def save(model: LaraModel, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(model.config.model_dump_json(indent=2))
    tensors = {k: v.detach().contiguous().cpu() for k, v in lara_state_dict(model).items()}
    save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "lara"})
    return directory


def _read_config(directory: Path) -> LaraConfig:
    """The saved LaraConfig, after checking both files are there (one line naming the LAM's folder when given a
    VLA's)."""
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            hint = ""
            if (directory / "config.json").is_file():  # e.g. RUN/final/vla given for RUN/final/lara
                hint = (f"; {directory} holds a VLA (config.json), not a LAM: a run's LAM is in "
                        f"{directory.parent / 'lara'} (latent_pretrain: {directory.parent / 'lam'})")
            raise MissingPath(f"{directory / name} not found: a LARA checkpoint holds {CONFIG_NAME} and "
                              f"{WEIGHTS_NAME}{hint}")
    return LaraConfig.model_validate_json((directory / CONFIG_NAME).read_text())


def load(model: nn.Module, directory: str | Path) -> LaraModel:
    """Attach LARA to `model` with the saved config and weights. Keys must match exactly."""
    directory = Path(directory)
    config = _read_config(directory)
    wrapped = attach(model, config)
    saved = load_file(directory / WEIGHTS_NAME)
    expected = lara_state_dict(wrapped)
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{directory / WEIGHTS_NAME} does not match this LARA config: missing {missing}, unexpected {unexpected}")
    for key, value in saved.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"{key}: saved shape {tuple(value.shape)}, model expects {tuple(expected[key].shape)}")
    wrapped.projector.load_state_dict({k[len("projector.") :]: v for k, v in saved.items() if k.startswith("projector.")})
    wrapped.lam.load_state_dict({k[len("lam.") :]: v for k, v in saved.items() if k.startswith("lam.")})
    return wrapped


def load_lam(directory: str | Path) -> LatentActionModel:
    """The latent action model alone from a LARA checkpoint (LAM refinement, probes, latent-action policies)."""
    directory = Path(directory)
    config = _read_config(directory)
    lam = LatentActionModel(config.lam)
    saved = {k[len("lam."):]: v for k, v in load_file(directory / WEIGHTS_NAME).items() if k.startswith("lam.")}
    lam.load_state_dict(saved)
    return lam


def save_lam(lam: LatentActionModel, directory: str | Path) -> Path:
    """A LAM alone (e.g. after LAM-only pre-training), in the LARA checkpoint format `load_lam` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(LaraConfig(lam=lam.cfg).model_dump_json(indent=2))
    tensors = {f"lam.{k}": v.detach().contiguous().cpu() for k, v in lam.state_dict().items()}
    save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "lara"})
    return directory
