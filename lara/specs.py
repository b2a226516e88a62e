"""Per-backbone alignment defaults, read off the backbone table (`lara.vla.backbones`).

A spec says which module's output is the policy hidden state, how wide it is, and which tokens are
the action positions. `LaraConfig.align` overrides any of it; a model whose `config.model_type` is
not in the table uses the generic spec, which needs `align.layer` (and `align.hidden_size` when it
cannot be read off the module).
"""

from __future__ import annotations

from torch import nn

from lara.config import AlignConfig
from lara.vla.backbones import BACKBONES, BackboneSpec

GENERIC = BackboneSpec(name="generic", layer=None, hidden_size=None, positions="all")
SPECS: dict[str, BackboneSpec] = {**{name: b.spec for name, b in BACKBONES.items()}, "generic": GENERIC}
MODEL_TYPES = {b.model_type: name for name, b in BACKBONES.items()}


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model under DDP (`.module`) and peft (`.get_base_model()`) wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model


def resolve_spec(model: nn.Module, backbone: str | None) -> BackboneSpec:
    if backbone is not None:
        if backbone not in SPECS:
            raise ValueError(f"unknown backbone spec '{backbone}'; expected one of {sorted(SPECS)}")
        return SPECS[backbone]
    model_type = getattr(getattr(unwrap(model), "config", None), "model_type", None)
    return SPECS[MODEL_TYPES.get(model_type, "generic")]


def resolve_alignment(model: nn.Module, spec: BackboneSpec, align: AlignConfig) -> AlignConfig:
    """The alignment config with every `None` filled in from the spec; raises when something is still unknown."""
    cfg = getattr(unwrap(model), "config", None)
    layer = align.layer or (spec.layer(cfg) if spec.layer else None)
    if layer is None:
        raise ValueError(
            f"no target layer for {type(unwrap(model)).__name__} (spec '{spec.name}'): set LaraConfig.align.layer "
            "to the dotted name of the module whose output is the policy hidden state"
        )
    positions = align.positions or spec.positions
    if positions == "action_tokens" and spec.action_token_ids is None:
        raise ValueError(
            f"align.positions='action_tokens' needs the action-token ids, which spec '{spec.name}' does not define: "
            "use backbone='openvla' or 'token_vla', or positions='mask' with a `lam_token_mask` in the batch"
        )
    chunk = align.chunk or (spec.chunk(cfg) if spec.chunk else None)
    if positions == "last_k" and chunk is None:
        raise ValueError("align.positions='last_k' needs align.chunk (how many trailing tokens are actions)")
    return align.model_copy(update={"layer": layer, "positions": positions, "chunk": chunk})


def infer_hidden_size(model: nn.Module, spec: BackboneSpec, module: nn.Module, align: AlignConfig) -> int:
    if align.hidden_size:
        return align.hidden_size
    if spec.hidden_size is not None:
        return spec.hidden_size(unwrap(model).config)
    width = _declared_width(module)
    if width is not None:
        return width
    raise ValueError(
        f"cannot read the output width of '{align.layer}' ({type(module).__name__}): set LaraConfig.align.hidden_size"
    )


def _declared_width(module: nn.Module) -> int | None:
    """Output width a module declares (Linear, Embedding, HF models); a Sequential's is its last child's."""
    if isinstance(module, nn.Sequential):
        return next((w for w in map(_declared_width, reversed(module)) if w is not None), None)
    for attr in ("out_features", "embedding_dim", "hidden_size", "d_model"):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    config = getattr(module, "config", None)
    return config.hidden_size if isinstance(getattr(config, "hidden_size", None), int) else None
