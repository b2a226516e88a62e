"""The reference TokenVLA (OpenVLA's layout): one action per observation as 7 action tokens."""

from __future__ import annotations

import numpy as np
import torch

from lara.vla.presets import token_vla_config
from lara.vla.token_vla import TokenVLA, preprocess_images
from lara.vla.tokenizer import ActionTokenizer, build_example, collate

from .base import Family, lara_inputs


class TokenVLAFamily(Family):
    name = "token_vla"

    def build(self) -> TokenVLA:
        cfg = self.config
        model = TokenVLA.from_pretrained(cfg.path) if cfg.path is not None else TokenVLA(token_vla_config(**cfg.build))
        if self.statistics is not None:  # predict_action un-normalises with the statistics it was trained on
            action = self.statistics.action
            model.config.norm_stats = {"q01": action.q01.tolist(), "q99": action.q99.tolist(),
                                       "mask": action.mask.tolist()}
        self.model_config = model.config
        self.action_tokenizer = ActionTokenizer(model.config.text_config.vocab_size, model.config.n_action_bins)
        return model

    def collate(self, samples: list[dict]) -> dict:
        lara = lara_inputs(samples)
        if lara.get("lam_action_free"):
            # no robot action: teacher-force the neutral action (bin of 0) so the action positions exist;
            # LaraModel leaves the base loss of this batch out
            actions = np.zeros((len(samples), self.model_config.action_dim), np.float32)
        else:
            actions = torch.stack([s["actions"][0] for s in samples]).numpy()  # a_t, normalised
        ids = self.action_tokenizer.encode(actions)
        batch = collate([build_example(s["instruction"], row) for s, row in zip(samples, ids)])
        images = torch.stack([s["image"] for s in samples])  # uint8 (B, 3, H, W)
        batch["pixel_values"] = preprocess_images(images, self.model_config.vision_config.image_size)
        return {**batch, **lara}
