"""Configuration of the latent action model and of the alignment, validated at construction.

Every field carries a description; `LaraConfig.model_dump_json()` / `LaraConfig.model_validate_json()`
round-trip exactly, and that JSON is what `lara.save` writes as `lara_config.json`.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lara.errors import InputError


def memory_bytes() -> int:
    """This machine's physical memory: the bound a config's allocations are checked against before they are made
    (a huge codebook or image size would otherwise allocate until the machine refuses)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf: a bound no real allocation reaches
        return 1 << 50


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """One line (an InputError) when `what` would need more than this machine's memory, before any of it is
    allocated: the bytes it needs, the bound, and `fix`."""
    limit = memory_bytes()
    if nbytes > limit:
        raise InputError(f"{what} would need {human_bytes(nbytes)}, more than this machine's {human_bytes(limit)} of "
                         f"memory; {fix}")


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field must be finite (an infinite weight or scale trains to NaN weights)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LAMConfig(_Strict):
    """Latent action model: IDM E(o_t, o_{t+k}) -> z, quantizer Q, FDM D(o_t, Q(z)) -> o_{t+k}."""

    image_size: int = Field(64, ge=8, description="Side of the square frames the LAM sees; inputs are resized to it.")
    channels: int = Field(3, ge=1, description="Channels of `lam_frames` (3 for RGB).")
    patch_size: int = Field(8, ge=1, description="Patch side of the pixel patch embedding (pixel input mode).")
    input: Literal["pixels", "features"] = Field(
        "pixels", description="'pixels': learned patch embedding; 'features': tokens of a frozen vision model."
    )
    vision_model: str | dict | None = Field(
        None,
        description="For input='features': a local path to a transformers vision model (Dinov2Model, "
        "SiglipVisionModel, ViTMAEModel) or its config as a dict with 'model_type'. Kept frozen.",
    )
    width: int = Field(128, ge=8, description="Transformer width of the IDM and FDM.")
    heads: int = Field(4, ge=1, description="Attention heads of the IDM and FDM.")
    idm_layers: int = Field(4, ge=1, description="Transformer blocks of the inverse dynamics model (encoder).")
    fdm_layers: int = Field(4, ge=1, description="Transformer blocks of the forward dynamics model (decoder).")
    latent_tokens: int = Field(8, ge=1, description="n: latent action tokens (LARA release: 8).")
    latent_dim: int = Field(32, ge=1, description="d: dims per latent token (LARA release: 32).")
    quantizer: Literal["vq", "nsvq", "fsq", "none"] = Field(
        "vq", description="'vq' EMA codebook with dead-code restart, 'nsvq' (LAPA), 'fsq', or 'none' (continuous)."
    )
    codebook_size: int = Field(128, ge=2, description="Codes of the vq / nsvq codebook (LARA release: 128).")
    fsq_levels: list[int] = Field(
        [8, 5, 5, 5], description="FSQ levels per projected dim; the codebook size is their product."
    )
    codebook_metric: Literal["euclidean", "cosine"] = Field(
        "cosine", description="vq lookup: nearest code by euclidean distance, or by cosine with latents and codes "
        "l2-normalised (ViT-VQGAN's remedy for unused codes)."
    )
    commitment: float = Field(0.25, ge=0, description="Weight of the commitment term ||z - sg(e)||^2 (vq).")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="EMA decay of the vq codebook.")
    dead_code_threshold: float = Field(
        0.05, ge=0, description="A vq/nsvq code whose EMA usage falls below this fraction of the mean usage is "
        "restarted from a latent of the current batch (against codebook collapse).",
    )
    target: Literal["pixels", "features", "vlm"] = Field(
        "pixels", description="What the FDM predicts: pixels (MSE) or the frozen features of o_{t+k} (MSE), "
        "both equal to `input`; or 'vlm': the pooled hidden states of a frozen vision-language model given "
        "`target_prompt` (o_t's as the FDM input, o_{t+k}'s as its target; feature MSE), whatever the input."
    )
    target_model: str | dict | None = Field(
        None, description="For target='vlm': a local path to a PaliGemma model, or its config as a dict with "
        "'model_type': 'paligemma' (random weights: tests). Kept frozen and not saved with the LAM.",
    )
    target_prompt: str = Field(
        "the robot arm's motion; ignore other moving things",
        description="For target='vlm': the prompt the VLM reads with each frame (what the target should keep).",
    )
    recon_weighting: Literal["uniform", "motion"] = Field(
        "uniform", description="FDM loss: 'uniform' MSE over the target, or 'motion': that MSE plus the MSE "
        "weighted by how much each target element changed from o_t (most of a robot frame is static, and "
        "copying o_t would otherwise win the reconstruction without any latent action).",
    )
    motion_weight: float = Field(1.0, ge=0, description="Weight of the change-weighted term of recon_weighting='motion'.")
    action_dim: int = Field(7, ge=1, description="Robot action dims for the optional action head.")
    action_horizon: int = Field(
        0, ge=0, description="k of the action head A(z) -> a_{t:t+k}; 0 disables the head."
    )
    action_weight: float = Field(1.0, ge=0, description="Weight of the action-head loss inside the LAM loss.")

    @model_validator(mode="after")
    def _check(self) -> LAMConfig:
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.input == "pixels" and self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if (self.input == "features" or self.target == "features") and self.vision_model is None:
            raise ValueError("input='features' or target='features' needs vision_model (a local path or a config dict)")
        if self.target == "vlm" and self.target_model is None:
            raise ValueError("target='vlm' needs target_model (a local PaliGemma path or a config dict)")
        if self.target != "vlm" and self.target != self.input:
            raise ValueError(
                f"target='{self.target}' with input='{self.input}': the FDM predicts o_{{t+k}} on its input token grid, "
                "so target and input must be the same ('pixels' or 'features')"
            )
        return self

    @model_validator(mode="after")
    def _fits(self) -> LAMConfig:
        """The LAM's weights and one sample's activations, estimated from the sizes, must fit in this machine's
        memory: `codebook_size=10**12` or `image_size=100000` are refused here, naming the field and the bound."""
        floats = 4  # bytes of a float32
        codebook = 3 * self.codebook_size * self.latent_dim * floats if self.quantizer in ("vq", "nsvq") else 0
        tokens = (self.image_size // self.patch_size) ** 2  # per frame (a frozen vision model: fewer)
        layers = self.idm_layers + self.fdm_layers
        weights = floats * (2 * tokens * self.width + 2 * self.patch_size ** 2 * self.channels * self.width
                            + 12 * self.width ** 2 * layers)
        sample = floats * (8 * self.channels * self.image_size ** 2 + 16 * tokens * self.width * layers
                           + self.heads * (2 * tokens) ** 2)  # frames, token activations, attention scores
        if codebook >= weights + sample:
            check_fits(codebook + weights + sample, f"codebook_size={self.codebook_size} (x latent_dim "
                       f"{self.latent_dim}: the codebook and its running averages)",
                       f"give a codebook_size below {max(2, memory_bytes() // (3 * self.latent_dim * floats))}")
        else:
            check_fits(codebook + weights + sample, f"image_size={self.image_size} (patch_size {self.patch_size}: "
                       f"{tokens} tokens a frame, the LAM's weights and one sample's activations)",
                       "give a smaller image_size (LARA's LAM sees 64 to 224 px)")
        return self


class AlignConfig(_Strict):
    """Where the VLA hidden state is captured and how it is aligned with the LAM latent."""

    layer: str | None = Field(
        None,
        description="Dotted module path whose output is captured (e.g. 'language_model.model.layers.24'). "
        "None: the backbone spec's default. Matched by suffix, so peft/DDP prefixes resolve.",
    )
    hidden_size: int | None = Field(None, ge=1, description="Width of the captured hidden state; None: from the spec.")
    positions: Literal["last_k", "action_tokens", "mask", "all"] | None = Field(
        None,
        description="Which tokens are action positions: the last `chunk` tokens (pi0), the tokens predicting "
        "action-token labels (OpenVLA), a boolean `lam_token_mask` [B, T] from the batch, or all tokens. "
        "None: the spec's default.",
    )
    chunk: int | None = Field(None, ge=1, description="For positions='last_k': how many trailing tokens. None: spec.")
    pool: Literal["last", "mean", "first"] = Field(
        "last", description="Pool the action positions to one vector: the last one (release), their mean, or the "
        "first one (with positions='action_tokens': the position predicting the first action token, which sees no "
        "teacher-forced action token).",
    )
    projector: Literal["linear", "mlp"] = Field("linear", description="P: a single Linear (release) or REPA's 3-layer MLP.")
    projector_hidden: int = Field(1024, ge=1, description="Hidden width of the 'mlp' projector.")
    loss: Literal["cosine", "mse", "infonce"] = Field("cosine", description="Alignment loss between P(h) and flatten(z).")
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature.")
    detach_target: bool = Field(
        False, description="Stop the alignment gradient at z (ablation); default: it reaches the LAM encoder too."
    )
    shuffle_target: bool = Field(
        False, description="Control arm: align each sample's policy latent with the LAM latent of another valid "
        "sample of the batch (a fresh random derangement each step), which removes the latent actions' per-sample "
        "information and keeps the LAM, its losses and every step's compute. Default: its own latent.",
    )


class LaraConfig(_Strict):
    """Everything `lara.attach` needs besides the model."""

    backbone: str | None = Field(
        None, description="Backbone spec name: a row of lara/vla/backbones.py (e.g. 'pi0', 'token_vla') or "
        "'generic'; None: from model_type."
    )
    align: AlignConfig = Field(default_factory=AlignConfig, description="Alignment settings.")
    lam: LAMConfig = Field(default_factory=LAMConfig, description="Latent action model settings.")
    align_weight: float = Field(0.01, ge=0, description="w_align (release: 0.01).")
    lam_weight: float = Field(0.01, ge=0, description="w_lam (release: 0.01).")
    fdm_weight: float = Field(
        0.0, ge=0, description="w_fdm of || D(o_t, P(h)) - target(o_{t+k}) ||; 0 disables the policy FDM loss."
    )
    dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="dtype of the projector's and the LAM's weights, their own whatever the VLA's: 'fp32' "
        "keeps these small modules exact beside a bf16 VLA; 'bf16' halves their memory. The alignment loss is "
        "computed in fp32 and a vq codebook's EMA statistics stay fp32 in any case.",
    )
    check_inputs: bool = Field(
        True, description="Check float `lam_frames` for NaN/inf and values outside [0, 1] (one host sync per step; "
        "uint8 frames need none)."
    )
