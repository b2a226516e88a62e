"""TokenVLA: the reference autoregressive VLA, OpenVLA's layout built from transformers classes.

    vision_backbone  SiglipVisionModel (or ResNetModel)   image -> patch features
    projector        fc1 -> GELU -> fc2                   patch features -> LLM width
    language_model   LlamaForCausalLM                     [BOS, patches, prompt, action tokens, EOS]

Module paths (`language_model.model.layers.N`), the splice of patches after BOS, the 256-bin action
tokens on the last vocabulary ids and the q01/q99 statistics in the config are OpenVLA's, so the
`openvla` spec is exercised on this model at any size. It saves and loads with `save_pretrained` /
`from_pretrained` and works with transformers 4.40 (OpenVLA's pin) as well as 5.x.

Options, all off by default (the default is OpenVLA: one camera, one action as 7 autoregressive tokens):

    chunk_size      H actions per observation (an action chunk a_t..a_{t+H-1}: H x 7 action positions)
    action_head     'tokens': the chunk's tokens decoded one by one (cross-entropy on the 256 bins);
                    'l1': OpenVLA-OFT's parallel decoding: the action positions get empty (zero) input
                    embeddings, one forward pass reads all of them, and an MLP on their hidden states
                    regresses the continuous normalised chunk (L1 loss)
    cameras         the obs keys of the images it reads; each goes through the same vision tower and
                    their patches are spliced in one after another (OFT's wrist camera)
    proprio_dim     > 0: the robot state (LIBERO: ee pos, ee axis-angle, gripper qpos), standardised with
                    `proprio_stats`, becomes one token after the patches (OFT's proprio projector)
    vision_type     'siglip' (OpenVLA's ViT) or 'resnet' (transformers' ResNetModel: a conv tower whose
                    last feature map's cells are the patches, the usual choice for small-data imitation)
    image_shift     > 0: in training mode, each image is shifted by up to this many pixels (edge padding and
                    a random crop back, DrQ's augmentation); nothing changes at inference
    latent_codes    > 0: that many vocabulary rows appended after the action bins, one per code of a LAM's
                    codebook (LAPA's latent-action pre-training, adapters/latent_pretrain.py); the action bins
                    keep their ids, `vocab_size - latent_codes - n_action_bins` onwards

Every option keeps the action positions where the `token_vla` spec finds them (labels holding action ids,
patches inserted after BOS), so LARA aligns the same hidden states whichever head decodes them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    ResNetConfig,
    ResNetModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.modeling_outputs import ModelOutput

from lara.align import action_token_mask
from lara.errors import InputError
from lara.vla.token_vla.tokenizer import IGNORE_INDEX, ActionTokenizer, build_example, collate, unnormalize

ACTION_HEADS = ("tokens", "l1")
VISION_TYPES = {"siglip": (SiglipVisionConfig, SiglipVisionModel), "resnet": (ResNetConfig, ResNetModel)}
DEFAULT_CAMERAS = ("agentview_rgb",)


class TokenVLAConfig(PretrainedConfig):
    """vision_config / text_config: SiglipVisionConfig / LlamaConfig fields. Left out, they are transformers'
    defaults: a SigLIP-base tower and a 7B Llama-2-sized LLM (4096 wide, 32 layers, 32000 ids), so
    `TokenVLA(TokenVLAConfig())` allocates about 7B parameters. Small models: `token_vla_config` below."""

    model_type = "lara_token_vla"

    def __init__(
        self,
        vision_config: dict | None = None,
        text_config: dict | None = None,
        n_action_bins: int = 256,
        action_dim: int = 7,
        norm_stats: dict | None = None,
        initializer_range: float = 0.02,
        chunk_size: int = 1,
        action_head: str = "tokens",
        cameras: list[str] | tuple[str, ...] = DEFAULT_CAMERAS,
        proprio_dim: int = 0,
        proprio_stats: dict | None = None,
        vision_type: str = "siglip",
        image_size: int | None = None,
        image_shift: int = 0,
        latent_codes: int = 0,
        **kwargs,
    ):
        if action_head not in ACTION_HEADS:
            raise InputError(f"action_head must be one of {ACTION_HEADS}, got {action_head!r}")
        if vision_type not in VISION_TYPES:
            raise InputError(f"vision_type must be one of {sorted(VISION_TYPES)}, got {vision_type!r}")
        if chunk_size < 1 or proprio_dim < 0 or image_shift < 0 or latent_codes < 0 or not cameras:
            raise InputError(f"need chunk_size >= 1, proprio_dim >= 0, image_shift >= 0, latent_codes >= 0 and at "
                             f"least one camera; got {chunk_size}, {proprio_dim}, {image_shift}, {latent_codes}, "
                             f"{list(cameras)}")
        vision_config = vision_config.to_dict() if isinstance(vision_config, PretrainedConfig) else (vision_config or {})
        text_config = text_config.to_dict() if isinstance(text_config, PretrainedConfig) else (text_config or {})
        for cfg in (vision_config, text_config):
            cfg.pop("model_type", None)
        self.vision_type = vision_type
        self.vision_config = VISION_TYPES[vision_type][0](**vision_config)
        self.text_config = LlamaConfig(**text_config)
        self.n_action_bins, self.action_dim = n_action_bins, action_dim
        self.norm_stats = norm_stats  # {"q01": [...], "q99": [...], "mask": [...]} of the training actions
        self.initializer_range = initializer_range
        self.chunk_size, self.action_head = chunk_size, action_head
        self.cameras = list(cameras)
        self.proprio_dim = proprio_dim
        self.proprio_stats = proprio_stats  # {"mean": [...], "std": [...]} of the training proprio
        # the input resolution: the SigLIP tower's own, or (a ResNet has none) this field
        self.image_size = getattr(self.vision_config, "image_size", None) or image_size or 224
        self.image_shift = image_shift
        self.latent_codes = latent_codes  # counted in text_config.vocab_size: the last rows of the embedding
        super().__init__(**kwargs)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["vision_config"], out["text_config"] = self.vision_config.to_dict(), self.text_config.to_dict()
        return out


@dataclass
class TokenVLAOutput(ModelOutput):
    """The 'l1' head's output: `actions` (B, H, A), the normalised chunk it regressed."""

    loss: torch.Tensor | None = None
    actions: torch.Tensor | None = None


def _mlp(width_in: int, width: int, width_out: int, norm: bool = True) -> nn.Sequential:
    layers = [nn.LayerNorm(width_in)] if norm else []  # never on the robot state: it would remove its mean
    return nn.Sequential(*layers, nn.Linear(width_in, width), nn.GELU(), nn.Linear(width, width_out))


class TokenVLA(PreTrainedModel):
    config_class = TokenVLAConfig
    base_model_prefix = "token_vla"
    supports_gradient_checkpointing = True  # its towers (Siglip / ResNet, Llama) checkpoint their own blocks
    _no_split_modules = ["LlamaDecoderLayer", "SiglipEncoderLayer"]  # the blocks FSDP shards one by one
    main_input_name = "input_ids"

    def __init__(self, config: TokenVLAConfig):
        super().__init__(config)
        self.vision_backbone = VISION_TYPES[config.vision_type][1](config.vision_config)
        width_t = config.text_config.hidden_size
        width_v = (config.vision_config.hidden_sizes[-1] if config.vision_type == "resnet"
                   else config.vision_config.hidden_size)
        self.projector = nn.Sequential()
        self.projector.add_module("fc1", nn.Linear(width_v, width_t))
        self.projector.add_module("act", nn.GELU())
        self.projector.add_module("fc2", nn.Linear(width_t, width_t))
        self.language_model = LlamaForCausalLM(config.text_config)
        # the action bins end where the LAM code rows of latent-action pre-training begin (none by default)
        self.action_tokenizer = ActionTokenizer(config.text_config.vocab_size - config.latent_codes,
                                                config.n_action_bins)
        if config.proprio_dim:
            self.proprio_projector = _mlp(config.proprio_dim, width_t, width_t, norm=False)
        if config.action_head == "l1":  # OFT's L1 regression head: one chunk step's A hidden states -> its A values
            self.action_head = _mlp(config.action_dim * width_t, width_t, config.action_dim)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()

    @property
    def first_code_id(self) -> int:
        """Token id of LAM code 0: the row right after the action bins (code c is `first_code_id + c`)."""
        return self.config.text_config.vocab_size - self.config.latent_codes

    def set_latent_codes(self, n: int) -> None:
        """Append `n` vocabulary rows for LAM code tokens after the action bins, or drop them (`n=0`): the
        embedding and the LM head grow or shrink at their end, so every text and action id keeps its row."""
        if n == self.config.latent_codes:
            return
        base = self.first_code_id
        resize = self.language_model.resize_token_embeddings
        # new rows from _init_weights (transformers >= 4.46 would otherwise draw them around the old rows' mean)
        plain = {"mean_resizing": False} if "mean_resizing" in inspect.signature(resize).parameters else {}
        resize(base + n, **plain)
        self.config.text_config.vocab_size = self.language_model.config.vocab_size = base + n
        self.config.latent_codes = n

    def _images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) or (B, N, 3, S, S), N = len(config.cameras) -> (B, N * P, D) projected patches."""
        if pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]
        n = len(self.config.cameras)
        if pixel_values.ndim != 5 or pixel_values.shape[1] != n:
            raise ValueError(f"pixel_values must be (B, {n}, 3, S, S) for the cameras {self.config.cameras} (or "
                             f"(B, 3, S, S) for one); got {tuple(pixel_values.shape)}")
        b = pixel_values.shape[0]
        x = pixel_values.flatten(0, 1)  # (B * N, 3, S, S)
        if self.training and self.config.image_shift:
            x = random_shift(x, self.config.image_shift)
        features = self.vision_backbone(pixel_values=x).last_hidden_state
        if features.ndim == 4:  # a conv tower's (B * N, C, h, w): its cells are the patches
            features = features.flatten(2).transpose(1, 2)
        return self.projector(features).reshape(b, -1, self.config.text_config.hidden_size)  # (B, N * P, D)

    def _proprio(self, proprio: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """(B, S) raw robot state -> one token (B, 1, D), standardised with the training statistics."""
        if proprio is None or proprio.shape[-1] != self.config.proprio_dim:
            given = "none" if proprio is None else tuple(proprio.shape)
            raise ValueError(f"this TokenVLA reads the robot state: `proprio` (B, {self.config.proprio_dim}) raw, "
                             f"got {given}")
        proprio = proprio.to(like)
        stats = self.config.proprio_stats
        if stats is not None:
            mean, std = (torch.as_tensor(stats[k], dtype=like.dtype, device=like.device) for k in ("mean", "std"))
            proprio = (proprio - mean) / (std + 1e-6)
        return self.proprio_projector(proprio)[:, None]

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, proprio: torch.Tensor | None = None
              ) -> torch.Tensor:
        """[BOS, patches (of each camera), proprio token, rest]: OpenVLA splices the projected image patches
        in right after BOS (OFT adds the proprio token after them). With the 'l1' head the action positions'
        inputs are empty (zero), as OFT's parallel decoding has them: nothing of the chunk is teacher-forced."""
        text = self.language_model.get_input_embeddings()(input_ids)  # (B, T, D)
        if self.config.action_head == "l1":
            tok = self.action_tokenizer
            text = text.masked_fill(((input_ids >= tok.first_id) & (input_ids <= tok.last_id))[..., None], 0.0)
        inserted = [self._images(pixel_values).to(text.dtype)]
        if self.config.proprio_dim:
            inserted.append(self._proprio(proprio, text))
        return torch.cat([text[:, :1], *inserted, text[:, 1:]], dim=1)  # (B, T + P (+ 1), D)

    def forward(self, input_ids, pixel_values, attention_mask=None, labels=None, proprio=None, actions=None,
                action_mask=None, **kwargs):
        """'tokens': the LM's output (cross-entropy on `labels`). 'l1': a TokenVLAOutput with the regressed chunk
        and, given `actions` (B, H, A) normalised (+ `action_mask` (B, H): False on padding), their L1 loss."""
        if self.config.action_head == "tokens":
            return self.lm_forward(input_ids, pixel_values, attention_mask, labels, proprio, **kwargs)
        embeds = self.embed(input_ids, pixel_values, proprio)
        extra = embeds.shape[1] - input_ids.shape[1]  # number of image patches (+ the proprio token)
        if attention_mask is not None:
            attention_mask = splice_after_bos(attention_mask, extra, 1)
        if labels is None:
            raise ValueError("the 'l1' head finds its action positions from `labels` (the action token ids after the "
                             "prompt, as build_example writes them); the batch has none")
        hidden = self.language_model.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        tok, h, a = self.action_tokenizer, self.config.chunk_size, self.config.action_dim
        # the positions that decode the action tokens (each predicts the next one), as LARA's spec selects them
        mask = action_token_mask(labels, tok.first_id, tok.last_id, hidden.shape[1], insert_at=1)  # (B, T + P)
        if (mask.sum(1) != h * a).any():
            raise ValueError(f"each sample needs {h * a} action positions (chunk_size {h} x action_dim {a}); "
                             f"labels hold {mask.sum(1).tolist()}")
        pred = self.action_head(hidden[mask].reshape(-1, h, a * hidden.shape[-1]))  # (B, H, A)
        loss = None
        if actions is not None:
            if actions.shape != pred.shape:
                raise ValueError(f"`actions` must be (B, {h}, {a}) normalised; got {tuple(actions.shape)}")
            weight = (torch.ones(pred.shape[:2], device=pred.device) if action_mask is None
                      else action_mask.to(pred.dtype))[..., None].expand_as(pred)
            loss = ((pred - actions.to(pred.dtype)).abs() * weight).sum() / weight.sum().clamp(min=1)
        return TokenVLAOutput(loss=loss, actions=pred)

    def lm_forward(self, input_ids, pixel_values, attention_mask=None, labels=None, proprio=None, **kwargs):
        """The LM's output over [BOS, patches, text]: cross-entropy on `labels` (B, T) given in `input_ids`' positions,
        the logits (B, T + P, V) in the spliced ones. The 'tokens' head's forward, and the latent-code prediction of
        latent-action pre-training whichever head decodes the actions."""
        embeds = self.embed(input_ids, pixel_values, proprio)
        extra = embeds.shape[1] - input_ids.shape[1]  # number of image patches (+ the proprio token)
        if attention_mask is not None:
            attention_mask = splice_after_bos(attention_mask, extra, 1)
        if labels is not None:
            labels = splice_after_bos(labels, extra, IGNORE_INDEX)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def predict_action(self, pixel_values: torch.Tensor, instructions: list[str], unnorm: bool = True,
                       proprio: torch.Tensor | None = None) -> np.ndarray:
        """Actions (B, A) for chunk_size 1 (OpenVLA's), else the chunk (B, H, A); un-normalised by default.
        'tokens': greedy decoding restricted to the action ids; 'l1': one forward pass."""
        h, a = self.config.chunk_size, self.config.action_dim
        tok = self.action_tokenizer
        if self.config.action_head == "l1":
            placeholders = np.full(h * a, tok.first_id)  # any action id: their inputs are zeroed
            batch = collate([build_example(text, placeholders) for text in instructions])
            _check_one_length(batch)
            out = self(**{k: v.to(pixel_values.device) for k, v in batch.items()}, pixel_values=pixel_values,
                       proprio=proprio)
            actions = out.actions.float().cpu().numpy()  # (B, H, A)
        else:
            batch = collate([build_example(text, None) for text in instructions])
            _check_one_length(batch)
            embeds = self.embed(batch["input_ids"].to(pixel_values.device), pixel_values, proprio)
            # the KV cache argument is `past_key_values` in transformers 4.x and `cache` in 5.x
            cache_kw = "cache" if "cache" in inspect.signature(self.language_model.forward).parameters else "past_key_values"
            past, generated = None, []
            for _ in range(h * a):
                out = self.language_model(inputs_embeds=embeds, use_cache=True, **{cache_kw: past})
                past = out[cache_kw]
                logits = out.logits[:, -1, tok.first_id : tok.last_id + 1]  # (B, n_bins)
                next_id = logits.argmax(-1) + tok.first_id  # (B,)
                generated.append(next_id)
                embeds = self.language_model.get_input_embeddings()(next_id[:, None])
            ids = torch.stack(generated, 1).cpu().numpy()  # (B, H * A)
            actions = tok.decode(ids).reshape(-1, h, a)
        if unnorm and self.config.norm_stats is not None:
            actions = unnormalize(actions, self.config.norm_stats)
        actions = actions.astype(np.float32)
        return actions[:, 0] if h == 1 else actions


def splice_after_bos(rows: torch.Tensor, extra: int, value: int) -> torch.Tensor:
    """(B, T) -> (B, T + extra): `extra` entries of `value` after the first (BOS) position, where `embed` puts
    the image patches (and the proprio token)."""
    return torch.cat([rows[:, :1], rows.new_full((rows.shape[0], extra), value), rows[:, 1:]], 1)


def _check_one_length(batch: dict) -> None:
    if (batch["attention_mask"] == 0).any():
        raise ValueError("predict_action decodes instructions of one tokenized length per batch; call it per instruction")


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ's augmentation: (B, C, S, S) edge-padded by `pad` and cropped back at a random offset per image
    (torch's global generator: a resumed run draws the same shifts)."""
    b, _, hgt, wid = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy, dx = (torch.randint(0, 2 * pad + 1, (b,), device=images.device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(hgt, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(wid, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def preprocess_images(images: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (B, 3, H, W) -> SigLIP pixel values (B, 3, size, size) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[None]
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - 0.5) / 0.5


AutoConfig.register(TokenVLAConfig.model_type, TokenVLAConfig, exist_ok=True)
AutoModel.register(TokenVLAConfig, TokenVLA, exist_ok=True)


def token_vla_config(width: int = 64, layers: int = 2, image_size: int = 32, vocab_size: int = 1024,
                     patch_size: int = 8, vision_type: str = "siglip", **kw) -> TokenVLAConfig:
    """A small TokenVLA (tests, the demo: a training step in milliseconds on a CPU core). `vision_type='resnet'`:
    a 3-stage basic-block ResNet (widths width/4, width/2, width; stride 16, so a 64 px image gives 4 x 4 patches)
    instead of the 1-layer SigLIP tower with `patch_size`. Other keywords (chunk_size, action_head, cameras,
    proprio_dim, image_shift, ...) go to TokenVLAConfig. Sizes that cannot build are an InputError naming them."""
    from lara.vla.token_vla.tokenizer import BYTE_OFFSET

    n_bins = kw.get("n_action_bins", 256)
    counts = dict(width=width, layers=layers, image_size=image_size, vocab_size=vocab_size, patch_size=patch_size,
                  n_action_bins=n_bins, **{k: kw[k] for k in ("chunk_size", "action_dim", "proprio_dim", "image_shift")
                                           if k in kw})
    for name, value in counts.items():
        least = 0 if name in ("proprio_dim", "image_shift") else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise InputError(f"model.build.{name} must be an integer >= {least}, got {value!r}")
    if width % (4 if vision_type == "resnet" else 2):
        raise InputError(f"model.build.width ({width}) must be divisible by {4 if vision_type == 'resnet' else 2} "
                         f"({'the ResNet stages are width/4, width/2, width' if vision_type == 'resnet' else 'two attention heads'})")
    if vision_type != "resnet" and image_size < patch_size:
        raise InputError(f"model.build.image_size ({image_size}) is smaller than one patch "
                         f"(model.build.patch_size={patch_size}): the vision tower would see no patch")
    if vocab_size < BYTE_OFFSET + 256 + n_bins:
        raise InputError(f"model.build.vocab_size ({vocab_size}) leaves no room for the {BYTE_OFFSET + 256} text ids "
                         f"and {n_bins} action ids: give at least {BYTE_OFFSET + 256 + n_bins}")
    if vision_type == "resnet":
        vision = dict(num_channels=3, embedding_size=width // 4, hidden_sizes=[width // 4, width // 2, width],
                      depths=[1, 1, 1], layer_type="basic", hidden_act="relu", downsample_in_first_stage=False)
        kw["image_size"] = image_size
    else:
        vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
                      image_size=image_size, patch_size=patch_size)
    text = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2,
                num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=512, pad_token_id=0,
                bos_token_id=1, eos_token_id=2)
    return TokenVLAConfig(vision_config=vision, text_config=text, vision_type=vision_type, **kw)


def tiny_token_vla(**kw) -> TokenVLA:
    return TokenVLA(token_vla_config(**kw))
