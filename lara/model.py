"""`lara.attach` / `lara.detach` and `LaraModel`, the drop-in training wrapper.

    m = lara.attach(vla)                          # spec from vla.config.model_type, or LaraConfig(...)
    out = m(**batch)                              # batch = the VLA's own inputs + lam_frames (+ lam_actions ...)
    out.loss.backward()                           # L_vla + w_align L_align + w_lam L_lam (+ w_fdm L_fdm)
    out["lara"]["align/cos"]                      # detached, unweighted components for logging
    vla = lara.detach(m)                          # the very same object, untouched
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Optional

import torch
from torch import nn

from lara.align import action_token_mask, alignment_loss, build_projector, capture, find_module, pool
from lara.config import LaraConfig
from lara.lam import LatentActionModel, masked_mean
from lara.quantize import VectorQuantizer
from lara.specs import BackboneSpec, infer_hidden_size, resolve_alignment, resolve_spec, unwrap

LARA_KEYS = ("lam_frames", "lam_actions", "lam_valid", "lam_action_mask", "lam_token_mask", "lam_action_free")
_MARK = "_lara_attached"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class LaraModel(nn.Module):
    """A VLA plus a projector and a latent action model. Forward is the VLA's, with the LARA losses added."""

    def __init__(self, base: nn.Module, config: LaraConfig, spec: BackboneSpec, lam: LatentActionModel | None = None):
        super().__init__()
        self.base = base
        self.spec = spec
        self.layer_name, module = find_module(base, config.align.layer)
        width = infer_hidden_size(base, spec, module, config.align)
        self.lam = lam if lam is not None else LatentActionModel(config.lam)
        align = config.align.model_copy(update={"hidden_size": width})
        self.config = config.model_copy(update={"backbone": spec.name, "lam": self.lam.cfg, "align": align})
        # (first, last) action-token id, read once from the unwrapped model's config (peft/DDP hide it)
        self.action_token_ids = spec.action_token_ids(unwrap(base).config) if spec.action_token_ids else None
        self.projector = build_projector(config.align, width, self.lam.cfg.latent_tokens * self.lam.cfg.latent_dim)
        self.hidden_width = width
        device, dtype = next(base.parameters()).device, DTYPES[config.dtype]
        self.lam.to(device=device, dtype=dtype)
        self.projector.to(device=device, dtype=dtype)
        if isinstance(self.lam.quantizer, VectorQuantizer):
            self.lam.quantizer.float()  # EMA counts and sums: a 1 % update per step is below bf16's resolution
        self._alignment_enabled = True
        self._detached = False

    @contextlib.contextmanager
    def alignment_disabled(self) -> Iterator[None]:
        """Run the base model alone (its own loss only): baselines and ablations."""
        previous, self._alignment_enabled = self._alignment_enabled, False
        try:
            yield
        finally:
            self._alignment_enabled = previous

    def forward(self, **batch):
        if self._detached:
            raise RuntimeError("this LaraModel was detached; use the model lara.detach() returned")
        lara_in = {k: batch.pop(k) for k in LARA_KEYS if k in batch}
        if not self._alignment_enabled:
            return _attribute_reads(self.base(**batch))
        frames = self._frames(lara_in)
        with capture(self.base.get_submodule(self.layer_name)) as seen:
            out = self.base(**batch)
        if not seen:
            raise RuntimeError(f"the target layer '{self.layer_name}' did not run during the base forward")
        if not isinstance(out, Mapping):
            raise TypeError(
                f"LARA adds its losses to the base model's output, which must be a mapping with 'loss' "
                f"(e.g. a transformers ModelOutput); {type(self.base).__name__} returned a {type(out).__name__}"
            )
        h = self._policy_hidden(seen[-1], batch, lara_in)  # (B, width)
        if h.shape[0] != frames.shape[0]:
            raise ValueError(f"`lam_frames` holds {frames.shape[0]} samples but the model's batch has {h.shape[0]} "
                             f"(the output of '{self.layer_name}'): give one (o_t, o_{{t+k}}) pair per sample")
        valid = self._valid(lara_in, frames.shape[0], frames.device)  # (B,) float
        lam_out = self.lam(frames.to(self.lam_dtype), lara_in.get("lam_actions"), valid, lara_in.get("lam_action_mask"))
        pred = self.projector(h.to(self.projector_dtype)).float()  # (B, n*d); the loss in fp32 whatever the dtypes
        target = lam_out.z.flatten(1).float()  # (B, n*d), continuous pre-quantization latent
        if self.config.align.detach_target:
            target = target.detach()
        aligned_to = shuffled_among_valid(target, valid) if self.config.align.shuffle_target else target
        align, cos = alignment_loss(pred, aligned_to, valid, self.config.align)
        fdm = self._fdm_loss(pred, lam_out, valid) if self.config.fdm_weight > 0 else align.new_zeros(())

        # action-free batches (video): the base runs for its hidden states only, its loss is left out
        base_loss = None if lara_in.get("lam_action_free", False) else out.get("loss")
        cfg = self.config
        total = cfg.align_weight * align + cfg.lam_weight * lam_out.losses["total"] + cfg.fdm_weight * fdm
        if base_loss is not None:
            total = total + base_loss
        components = {
            "base": (base_loss if base_loss is not None else align.new_zeros(())).detach(),
            "align": align.detach(),
            "align/cos": cos.detach(),
            "lam/recon": lam_out.losses["recon"].detach(),
            "lam/commit": lam_out.losses["commit"].detach(),
            "lam/action": lam_out.losses["action"].detach(),
            "lam/perplexity": lam_out.stats["perplexity"].detach(),
            "lam/code_usage": lam_out.stats["code_usage"].detach(),
            "lam/z_std": latent_spread(target.detach(), valid),
            "align/constant": constant_alignment(target.detach(), valid),
            "fdm": fdm.detach(),
        }
        out["loss"] = total
        return _with_lara(out, components)

    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    @property
    def lam_dtype(self) -> torch.dtype:
        return self.lam.idm.embed.weight.dtype

    def _frames(self, lara_in: dict) -> torch.Tensor:
        """`lam_frames` (B, 2, C, H, W), uint8 in [0, 255] or float in [0, 1] -> float32 in [0, 1], checked."""
        if "lam_frames" not in lara_in:
            raise KeyError(
                "LARA needs `lam_frames` in the batch: a tensor (B, 2, C, H, W) of the frames o_t and o_{t+k} "
                "(uint8 or float in [0, 1]). Use `with model.alignment_disabled():` to run the base model alone."
            )
        f = lara_in["lam_frames"]
        c, p = self.lam.cfg.channels, self.lam.cfg.patch_size
        if not isinstance(f, torch.Tensor) or f.ndim != 5 or f.shape[1] != 2 or f.shape[2] != c:
            given = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"`lam_frames` must be (B, 2, {c}, H, W) = (o_t, o_{{t+k}}); got {given}")
        if f.shape[-1] < p or f.shape[-2] < p:
            raise ValueError(f"`lam_frames` of {f.shape[-2]}x{f.shape[-1]} px are smaller than one {p}x{p} LAM patch")
        device = next(self.projector.parameters()).device
        if f.dtype == torch.uint8:
            return f.to(device).float() / 255.0
        if not f.is_floating_point():
            raise ValueError(f"`lam_frames` must be uint8 or floating point; got {f.dtype}")
        if self.config.check_inputs:
            checks = torch.stack([torch.isfinite(f).all().float(), f.amin().float(), f.amax().float()])
            finite, low, high = checks.tolist()  # the one host sync of check_inputs
            if not finite:
                raise ValueError("`lam_frames` contains NaN or inf")
            if low < 0 or high > 1:
                raise ValueError(f"float `lam_frames` must lie in [0, 1]; found values in [{low:.4g}, {high:.4g}]. "
                                 "Pass 0..255 frames as uint8, or divide them by 255")
        return f.to(device).float()

    @staticmethod
    def _valid(lara_in: dict, batch_size: int, device: torch.device) -> torch.Tensor:
        valid = lara_in.get("lam_valid")
        if valid is None:
            return torch.ones(batch_size, device=device)
        if valid.shape != (batch_size,) or valid.dtype != torch.bool:
            raise ValueError(f"`lam_valid` must be a bool tensor of shape ({batch_size},); got {valid.dtype} {tuple(valid.shape)}")
        return valid.to(device).float()

    def _policy_hidden(self, hidden: torch.Tensor, batch: dict, lara_in: dict) -> torch.Tensor:
        align = self.config.align
        if hidden.ndim == 2 and align.positions == "all":
            hidden = hidden[:, None]  # (B, 1, W): a layer with one hidden vector per sample is one position
        if hidden.ndim != 3:
            hint = (f"A (B, W) output has no token positions: align.positions='all' takes it as one position per "
                    f"sample (positions is '{align.positions}'), or hook a layer with a token axis"
                    if hidden.ndim == 2 else "Hook a layer whose output is (B, T, W)")
            raise ValueError(f"the target layer '{self.layer_name}' outputs {tuple(hidden.shape)}; LARA expects hidden "
                             f"states (B, T, W): batch, token positions, width. {hint}")
        if hidden.shape[-1] != self.hidden_width:
            raise ValueError(f"the target layer '{self.layer_name}' outputs width {hidden.shape[-1]}, but the projector "
                             f"takes {self.hidden_width}: set LaraConfig.align.hidden_size={hidden.shape[-1]}")
        if align.positions == "last_k":
            return pool(hidden[:, -align.chunk :], None, align.pool)
        if align.positions == "all":
            return pool(hidden, None, align.pool)
        if align.positions == "mask":
            mask = lara_in.get("lam_token_mask")
            if mask is None or mask.dtype != torch.bool or mask.shape != hidden.shape[:2]:
                given = "missing" if mask is None else f"{mask.dtype} {tuple(mask.shape)}"
                raise ValueError(f"positions='mask' needs `lam_token_mask`, bool {tuple(hidden.shape[:2])}; got {given}")
            return pool(hidden, mask, align.pool)
        labels = batch.get("labels")
        if labels is None:
            raise KeyError("positions='action_tokens' finds the action positions from `labels`; the batch has none")
        first, last = self.action_token_ids
        mask = action_token_mask(labels, first, last, hidden.shape[1], self.spec.insert_at)
        return pool(hidden, mask, align.pool)

    def _fdm_loss(self, pred: torch.Tensor, lam_out, valid: torch.Tensor) -> torch.Tensor:
        """|| D(o_t, P(h)) - target(o_{t+k}) ||: the policy latent must be one the FDM can roll forward.

        The FDM acts as a fixed judge here (its weights are detached); only the policy and projector learn.
        """
        fdm = self.lam.fdm
        params = {k: v.detach() for k, v in fdm.named_parameters()}
        latent = pred.view_as(lam_out.z).to(lam_out.now.dtype)  # (B, n, d)
        out = torch.func.functional_call(fdm, params, (lam_out.now.detach(), latent))
        return masked_mean(self.lam.reconstruction_error(out, lam_out.now.detach(), lam_out.target.detach()), valid)

    def trainable_parameters(self) -> str:
        """One line: trainable parameters of the VLA, the projector and the LAM."""
        count = lambda mod: sum(p.numel() for p in mod.parameters() if p.requires_grad)  # noqa: E731
        total = sum(p.numel() for p in self.parameters())
        base, proj, lam = count(self.base), count(self.projector), count(self.lam)
        return (
            f"trainable params: VLA {base:,} || projector {proj:,} || LAM {lam:,} || "
            f"all params {total:,} || trainable% {100 * (base + proj + lam) / max(total, 1):.4f}"
        )


COLLAPSED_SPREAD = 0.01
"""A `latent_spread` below this is a collapsed LAM: every sample gets (nearly) the same latent, so the alignment
target is a constant. Measured: LAMs trained with their action head stay at 0.10-0.82 throughout training (the
reference study's LARA cells); reconstruction alone on scripted frames ends at 0.0001-0.001 (docs/probe.md "Is the LAM
alive?")."""


def latent_spread(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Std of the latent z (B, D) across the batch's valid samples, averaged over dims, relative to z's RMS:
    ~0 when the LAM gives every sample the same latent, which a constant projector output matches trivially."""
    w = valid[:, None]  # (B, 1)
    n = w.sum().clamp(min=2)
    mean = (z * w).sum(0) / n
    std = (((z - mean).pow(2) * w).sum(0) / (n - 1)).sqrt().mean()
    return std / ((z.pow(2) * w).sum() / (n * z.shape[1])).sqrt().clamp(min=1e-12)


def shuffled_among_valid(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """z (B, D) with each valid sample's row replaced by another valid sample's: a random derangement (a random
    order of the valid samples, each taking the next one's latent; no sample keeps its own with two or more). Invalid
    rows keep theirs (their loss weight is 0). The gradient still reaches every latent, through its new place."""
    index = valid.nonzero().flatten()  # (V,) the valid samples
    order = index[torch.randperm(index.numel(), device=z.device)]  # (V,) a random cycle through them
    source = torch.arange(z.shape[0], device=z.device)
    source[order] = order.roll(-1)  # order[i] takes the latent of order[i + 1]
    return z[source]


def constant_alignment(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - cos of the batch's mean latent with each valid z (B, D): what a prediction that ignores the
    sample would reach. An `align` near this has learned nothing beyond the mean latent."""
    mean = (z * valid[:, None]).sum(0, keepdim=True)  # (1, D): the valid samples' sum, which cos treats as their mean
    cos = torch.nn.functional.cosine_similarity(z, mean, dim=-1)  # (B,)
    return ((1 - cos) * valid).sum() / valid.sum().clamp(min=1)


@functools.cache
def _output_type_with_lara(cls: type) -> type:
    """`cls` plus a `lara` field: DDP and torch.compile rebuild ModelOutputs from their fields only."""
    return dataclasses.make_dataclass(cls.__name__, [("lara", Optional[dict], None)], bases=(cls,))


class LaraOutput(dict):
    """A base model's plain-dict output, still a dict, with attribute reads (`out.loss`, `out.lara`) as a
    transformers ModelOutput has: the README's loop then runs unchanged on a generic model."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the model's output has no {name!r}; its keys: {sorted(self)}") from None


def _attribute_reads(out):
    return LaraOutput(out) if type(out) is dict else out


def _with_lara(out: Mapping, components: dict) -> Mapping:
    if dataclasses.is_dataclass(out):  # a transformers ModelOutput: same type plus the `lara` field
        return _output_type_with_lara(type(out))(**out, lara=components)
    out = _attribute_reads(out)
    out["lara"] = components
    return out


def attach(model: nn.Module, config: LaraConfig | None = None, *, lam: LatentActionModel | None = None) -> LaraModel:
    """Wrap a VLA for LARA training. `lam`: a pre-trained LatentActionModel to continue from."""
    if isinstance(model, LaraModel) or getattr(model, _MARK, False):
        raise ValueError("LARA is already attached to this model; lara.detach() it first or use the LaraModel you have")
    config = config or LaraConfig()
    if lam is not None:
        config = config.model_copy(update={"lam": lam.cfg})
    spec = resolve_spec(model, config.backbone)
    config = config.model_copy(update={"align": resolve_alignment(model, spec, config.align)})
    wrapped = LaraModel(model, config, spec, lam)
    object.__setattr__(model, _MARK, True)
    return wrapped


def detach(model: LaraModel) -> nn.Module:
    """The VLA as it was given to `attach`: the same object, with no hook or attribute of LARA left on it."""
    if not isinstance(model, LaraModel):
        raise TypeError(f"lara.detach expects the LaraModel that lara.attach returned; got {type(model).__name__}")
    base = model.base
    if _MARK in base.__dict__:
        object.__delattr__(base, _MARK)
    model._detached = True
    return base
