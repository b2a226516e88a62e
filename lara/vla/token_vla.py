"""TokenVLA: the reference autoregressive VLA, OpenVLA's layout built from transformers classes.

    vision_backbone  SiglipVisionModel                    image -> patch features
    projector        fc1 -> GELU -> fc2                   patch features -> LLM width
    language_model   LlamaForCausalLM                     [BOS, patches, prompt, action tokens, EOS]

Module paths (`language_model.model.layers.N`), the splice of patches after BOS, the 256-bin action
tokens on the last vocabulary ids and the q01/q99 statistics in the config are OpenVLA's, so the
`openvla` spec is exercised on this model at any size. It saves and loads with `save_pretrained` /
`from_pretrained` and works with transformers 4.40 (OpenVLA's pin) as well as 5.x.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel, SiglipVisionConfig, SiglipVisionModel

from lara.vla.tokenizer import IGNORE_INDEX, ActionTokenizer, build_example, collate, unnormalize


class TokenVLAConfig(PretrainedConfig):
    """vision_config / text_config: SiglipVisionConfig / LlamaConfig fields. Left out, they are transformers'
    defaults: a SigLIP-base tower and a 7B Llama-2-sized LLM (4096 wide, 32 layers, 32000 ids), so
    `TokenVLA(TokenVLAConfig())` allocates about 7B parameters. Small models: `lara.vla.presets.token_vla_config`."""

    model_type = "lara_token_vla"

    def __init__(
        self,
        vision_config: dict | None = None,
        text_config: dict | None = None,
        n_action_bins: int = 256,
        action_dim: int = 7,
        norm_stats: dict | None = None,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        vision_config = vision_config.to_dict() if isinstance(vision_config, PretrainedConfig) else (vision_config or {})
        text_config = text_config.to_dict() if isinstance(text_config, PretrainedConfig) else (text_config or {})
        for cfg in (vision_config, text_config):
            cfg.pop("model_type", None)
        self.vision_config = SiglipVisionConfig(**vision_config)
        self.text_config = LlamaConfig(**text_config)
        self.n_action_bins, self.action_dim = n_action_bins, action_dim
        self.norm_stats = norm_stats  # {"q01": [...], "q99": [...], "mask": [...]} of the training actions
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["vision_config"], out["text_config"] = self.vision_config.to_dict(), self.text_config.to_dict()
        return out


class TokenVLA(PreTrainedModel):
    config_class = TokenVLAConfig
    base_model_prefix = "token_vla"
    main_input_name = "input_ids"

    def __init__(self, config: TokenVLAConfig):
        super().__init__(config)
        self.vision_backbone = SiglipVisionModel(config.vision_config)
        width_v, width_t = config.vision_config.hidden_size, config.text_config.hidden_size
        self.projector = nn.Sequential()
        self.projector.add_module("fc1", nn.Linear(width_v, width_t))
        self.projector.add_module("act", nn.GELU())
        self.projector.add_module("fc2", nn.Linear(width_t, width_t))
        self.language_model = LlamaForCausalLM(config.text_config)
        self.action_tokenizer = ActionTokenizer(config.text_config.vocab_size, config.n_action_bins)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """[BOS, patches, rest]: OpenVLA splices the projected image patches in right after BOS."""
        patches = self.projector(self.vision_backbone(pixel_values=pixel_values).last_hidden_state)  # (B, P, D)
        text = self.language_model.get_input_embeddings()(input_ids)  # (B, T, D)
        return torch.cat([text[:, :1], patches.to(text.dtype), text[:, 1:]], dim=1)  # (B, T + P, D)

    def forward(self, input_ids, pixel_values, attention_mask=None, labels=None, **kwargs):
        embeds = self.embed(input_ids, pixel_values)
        extra = embeds.shape[1] - input_ids.shape[1]  # number of image patches
        if attention_mask is not None:
            attention_mask = torch.cat(
                [attention_mask[:, :1], attention_mask.new_ones(attention_mask.shape[0], extra), attention_mask[:, 1:]], 1
            )
        if labels is not None:
            ignore = labels.new_full((labels.shape[0], extra), IGNORE_INDEX)
            labels = torch.cat([labels[:, :1], ignore, labels[:, 1:]], 1)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def predict_action(self, pixel_values: torch.Tensor, instructions: list[str], unnorm: bool = True) -> np.ndarray:
        """Greedy decoding of `action_dim` tokens, restricted to the action ids -> actions (B, A)."""
        batch = collate([build_example(text, None) for text in instructions])
        input_ids = batch["input_ids"].to(pixel_values.device)
        if (batch["attention_mask"] == 0).any():
            raise ValueError("predict_action decodes instructions of one tokenized length per batch; call it per instruction")
        embeds = self.embed(input_ids, pixel_values)
        # the KV cache argument is `past_key_values` in transformers 4.x and `cache` in 5.x
        cache_kw = "cache" if "cache" in inspect.signature(self.language_model.forward).parameters else "past_key_values"
        tok, past, generated = self.action_tokenizer, None, []
        for _ in range(self.config.action_dim):
            out = self.language_model(inputs_embeds=embeds, use_cache=True, **{cache_kw: past})
            past = out[cache_kw]
            logits = out.logits[:, -1, tok.first_id : tok.last_id + 1]  # (B, n_bins)
            next_id = logits.argmax(-1) + tok.first_id  # (B,)
            generated.append(next_id)
            embeds = self.language_model.get_input_embeddings()(next_id[:, None])
        ids = torch.stack(generated, 1).cpu().numpy()  # (B, A)
        actions = tok.decode(ids)
        if unnorm and self.config.norm_stats is not None:
            actions = unnormalize(actions, self.config.norm_stats)
        return actions.astype(np.float32)


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
