"""Task-centric FDM targets: a frozen vision-language model's pooled hidden states of a frame under a prompt.

    lam.target: vlm
    lam.target_model: /models/paligemma-3b-pt-224      # or a config dict {model_type: paligemma, ...}
    lam.target_prompt: "the robot arm's motion; ignore other moving things"

The FDM then predicts the VLM's representation of o_{t+k} from the VLM's representation of o_t and the latent
action (feature MSE), so that what the prompt steers the VLM away from (a moving distractor) costs the LAM
nothing to ignore (task-centric LAMs, Distracting MetaWorld). The input sequence is PaliGemma's: the image
tokens, BOS, then the prompt; the prefix attends both ways, so the image positions see the prompt. The last
hidden state is averaged over all positions and layer-normalised (its scale then does not depend on the VLM):
one target token of the VLM's width. The VLM is frozen and not saved with the LAM.

A VLM loaded from a local folder tokenises the prompt with its own tokenizer. One built from a config has no
tokenizer: the prompt's UTF-8 bytes are its ids (byte + 3), which is only good for tests and shape checks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lara.errors import InputError

SUPPORTED = ("paligemma",)
BYTE_OFFSET = 3  # byte ids start after PaliGemma's pad / eos / bos


class PromptedTarget(nn.Module):
    """frames (B, 3, H, W) in [0, 1] -> pooled, prompt-conditioned VLM hidden states (B, 1, D)."""

    def __init__(self, model: str | dict, prompt: str):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if isinstance(model, dict):
            spec = dict(model)
            vlm = AutoModel.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec))
            tokenizer = None
        else:
            vlm = AutoModel.from_pretrained(model)
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
        cfg = vlm.config
        if cfg.model_type not in SUPPORTED:
            raise InputError(f"lam.target_model is a {cfg.model_type!r} model; the vlm target supports "
                             f"{', '.join(SUPPORTED)} (its image tokens precede the prompt). Give a PaliGemma model.")
        vlm.requires_grad_(False).eval()
        object.__setattr__(self, "vlm", vlm)  # not a submodule: frozen, kept out of state_dict and .train()
        text = cfg.text_config
        image_token = cfg.image_token_index if getattr(cfg, "image_token_index", None) is not None else cfg.image_token_id
        if tokenizer is not None:
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            bos = tokenizer.bos_token_id
        else:
            if text.vocab_size < 256 + BYTE_OFFSET + 1:
                raise InputError(f"lam.target_model: a config-built VLM reads the prompt as bytes, which needs "
                                 f"vocab_size >= {256 + BYTE_OFFSET + 1}; got {text.vocab_size}.")
            prompt_ids = [b + BYTE_OFFSET for b in prompt.encode()]
            bos = text.bos_token_id if text.bos_token_id is not None else 2
        ids = [image_token] * text.num_image_tokens + [bos] + prompt_ids
        self.register_buffer("input_ids", torch.tensor([ids]), persistent=False)
        vision = cfg.vision_config
        self.size, self.dim, self.num_tokens = vision.image_size, text.hidden_size, 1
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)  # SigLIP's normalisation
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-1] != self.size or frames.shape[-2] != self.size:
            frames = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        self.vlm.to(frames.device)
        ids = self.input_ids.repeat(len(frames), 1)  # (B, L): the same prompt for every frame
        with torch.no_grad():
            hidden = self.vlm(input_ids=ids, pixel_values=((frames - self.mean) / self.std).to(self.vlm.dtype),
                              attention_mask=torch.ones_like(ids)).last_hidden_state  # (B, L, D)
        pooled = hidden.float().mean(1, keepdim=True)  # (B, 1, D)
        return F.layer_norm(pooled, pooled.shape[-1:]).to(frames.dtype)  # in the frames' (the LAM's) dtype
