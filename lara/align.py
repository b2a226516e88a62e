"""REPA-style alignment of a VLA hidden state with the LAM's latent action.

    h = output of a named module at the action positions, pooled     (B, width)
    L_align = 1 - cos(P(h), flatten(z))                              (or mse, infonce)

The hidden state is captured by a forward hook that exists only for the duration of one forward
(`capture`), so a detached model carries no trace of LARA.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lara.config import AlignConfig


def find_module(model: nn.Module, path: str) -> tuple[str, nn.Module]:
    """The module named `path`, matched on whole dotted components from the end.

    'language_model.model.layers.24' finds 'base_model.model.language_model.model.layers.24' under peft
    and 'module.language_model...' under DDP. No match, or an ambiguous one, raises with the nearest names.
    """
    names = dict(model.named_modules())
    if path in names:
        return path, names[path]
    matches = [n for n in names if n.endswith("." + path)]
    if len(matches) == 1:
        return matches[0], names[matches[0]]
    if matches:
        raise ValueError(f"target layer '{path}' is ambiguous: it matches {matches}. Give a longer path.")
    nearest = difflib.get_close_matches(path, list(names), n=5, cutoff=0.3)
    raise ValueError(
        f"target layer '{path}' does not exist in {type(model).__name__}. Nearest module names: {nearest}. "
        "Set LaraConfig.align.layer to one of the names from model.named_modules()."
    )


def _first_tensor(output: object) -> torch.Tensor:
    """A module's hidden states, whatever it returns: a tensor, a tuple (decoder layers) or a ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return output["last_hidden_state"] if "last_hidden_state" in output else next(iter(output.values()))
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find hidden states in the output of the hooked module (a {type(output).__name__})")


@contextlib.contextmanager
def capture(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect `module`'s output hidden states during the `with` block; the hook is removed in `finally`."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(_first_tensor(out)))
    try:
        yield seen
    finally:
        handle.remove()


def action_token_mask(labels: torch.Tensor, first_id: int, last_id: int, seq_len: int, insert_at: int) -> torch.Tensor:
    """Positions whose *next* token is an action token: the hidden states that decode the action.

    labels (B, T) are aligned with input ids (the model shifts them for its loss). Multimodal models
    that splice image patches into the sequence (OpenVLA puts them after BOS) make the hidden
    sequence longer than labels: the extra positions are inserted at `insert_at` and never selected.
    """
    is_action = (labels >= first_id) & (labels <= last_id)  # (B, T)
    predicts = torch.zeros_like(is_action)
    predicts[:, :-1] = is_action[:, 1:]  # position i predicts token i+1
    extra = seq_len - labels.shape[1]
    if extra < 0:
        raise ValueError(f"labels have {labels.shape[1]} positions but the hidden states only {seq_len}")
    if extra:
        pad = predicts.new_zeros(predicts.shape[0], extra)
        predicts = torch.cat([predicts[:, :insert_at], pad, predicts[:, insert_at:]], dim=1)
    return predicts


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """hidden (B, T, W), mask (B, T) bool or None (all positions) -> (B, W)."""
    if mask is None:
        if how == "mean":
            return hidden.mean(1)
        return hidden[:, 0] if how == "first" else hidden[:, -1]
    if how == "mean":
        m = mask.to(hidden.dtype)[..., None]  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if how == "first":
        index = torch.where(mask, positions, mask.shape[1]).amin(1).clamp(max=mask.shape[1] - 1)  # (B,)
    else:
        index = torch.where(mask, positions, -1).amax(1).clamp(min=0)  # (B,) index of the last action position
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def build_projector(cfg: AlignConfig, width: int, target_dim: int) -> nn.Module:
    if cfg.projector == "linear":
        return nn.Linear(width, target_dim)
    h = cfg.projector_hidden
    return nn.Sequential(nn.Linear(width, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, target_dim))


def alignment_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, cfg: AlignConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, target (B, D); weight (B,) 1 for valid samples. Returns (loss, mean cosine) over valid samples."""
    cos = F.cosine_similarity(pred, target, dim=-1)  # (B,)
    denom = weight.sum().clamp(min=1)
    mean_cos = (cos * weight).sum() / denom
    if cfg.loss == "cosine":
        loss = ((1 - cos) * weight).sum() / denom
    elif cfg.loss == "mse":
        loss = ((pred - target).pow(2).mean(-1) * weight).sum() / denom
    else:  # infonce: each policy latent must pick its own LAM latent among the batch's
        logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).t() / cfg.temperature  # (B, B)
        logits = logits.masked_fill(~weight.bool()[None, :], float("-inf"))
        labels = torch.arange(pred.shape[0], device=pred.device)
        per = F.cross_entropy(logits, labels, reduction="none").nan_to_num(0.0, posinf=0.0)
        loss = (per * weight).sum() / denom
    return loss, mean_cos
