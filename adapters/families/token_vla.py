"""The reference TokenVLA (OpenVLA's layout): by default one action per observation as 7 action tokens; with
`model.build` options an action chunk (autoregressive tokens or OFT's parallel L1 head), several cameras
(`data.extra_cameras`) and the robot state (`proprio_dim`).

A TokenVLA from latent-action pre-training (adapters/latent_pretrain.py) holds vocabulary rows for its LAM's
codes after the action bins. Every recipe that predicts actions drops them when it loads such a model
(`latent_codes` = 0 here): the post-trained policy then has the very vocabulary, LM head and softmax of one
trained from scratch, so a comparison of the two differs in the initial weights only, and LAPA likewise replaces
its latent-action head before fine-tuning on actions. Kept, the rows would only be pushed down by the action loss.
"""

from __future__ import annotations

import torch

from lara.errors import InputError
from lara.vla.presets import token_vla_config
from lara.vla.token_vla import TokenVLA, preprocess_images
from lara.vla.tokenizer import build_example, collate

from .base import Family, lara_inputs


class TokenVLAFamily(Family):
    name = "token_vla"
    latent_codes = 0  # LAM code rows the built model holds (latent_pretrain sets its codebook size)

    def build(self) -> TokenVLA:
        cfg = self.config
        if cfg.path is not None:
            model = TokenVLA.from_pretrained(cfg.path, **self.load_kwargs())
        else:
            with self.building():
                model = TokenVLA(token_vla_config(**cfg.build, cameras=list(self.cameras)))
        if model.config.latent_codes and not self.latent_codes:
            print(f"model.path={cfg.path}: its {model.config.latent_codes} LAM code rows (latent-action pre-training) "
                  "are dropped; this recipe predicts actions")
        model.set_latent_codes(self.latent_codes)  # action and text ids keep their rows
        if list(model.config.cameras) != list(self.cameras):
            raise InputError(f"the TokenVLA reads the cameras {model.config.cameras}, the data gives {list(self.cameras)} "
                             "(data.camera + data.extra_cameras): make them the same")
        if self.statistics is not None:  # predict_action un-normalises with the statistics it was trained on
            action = self.statistics.action
            model.config.norm_stats = {"q01": action.q01.tolist(), "q99": action.q99.tolist(),
                                       "mask": action.mask.tolist()}
        if model.config.proprio_dim and self.statistics is not None:  # None: frames only (latent pre-training)
            proprio = self.statistics.proprio
            if proprio is None or len(proprio.mean) != model.config.proprio_dim:
                found = "no robot state" if proprio is None else f"a {len(proprio.mean)}-D robot state"
                raise InputError(f"model.build.proprio_dim={model.config.proprio_dim}, but the data has {found} "
                                 "(LIBERO: ee_states + gripper_states = 8)")
            if model.config.proprio_stats is None:  # a pretrained model keeps the statistics it was trained on
                model.config.proprio_stats = {"mean": proprio.mean.tolist(), "std": proprio.std.tolist()}
        self.model_config = model.config
        self.action_tokenizer = model.action_tokenizer
        return model

    def collate(self, samples: list[dict]) -> dict:
        lara = lara_inputs(samples)
        cfg = self.model_config
        h = cfg.chunk_size
        if lara.get("lam_action_free"):
            # no robot action: teacher-force the neutral action (bin of 0) so the action positions exist;
            # LaraModel leaves the base loss of this batch out
            actions = torch.zeros((len(samples), h, cfg.action_dim))
            mask = torch.zeros((len(samples), h), dtype=torch.bool)
        else:
            if samples[0]["actions"].shape[0] < h:
                raise InputError(f"the TokenVLA predicts chunks of {h} actions but the data gives "
                                 f"{samples[0]['actions'].shape[0]}: set data.action_horizon >= {h}")
            actions = torch.stack([s["actions"][:h] for s in samples])  # (B, H, A): a_t..a_{t+H-1}, normalised
            mask = torch.stack([s["action_mask"][:h] for s in samples])  # (B, H)
        ids = self.action_tokenizer.encode(actions.numpy()).reshape(len(samples), -1)  # (B, H * A)
        batch = collate([build_example(s["instruction"], row) for s, row in zip(samples, ids)])
        batch["pixel_values"] = self.pixel_values(samples)
        if cfg.proprio_dim and lara.get("lam_action_free"):
            batch["proprio"] = self.neutral_state(len(samples))
        elif cfg.proprio_dim:
            if "proprio" not in samples[0]:
                raise InputError("the TokenVLA reads the robot state, which these samples lack (action-free data?)")
            batch["proprio"] = torch.stack([s["proprio"] for s in samples])
        if cfg.action_head == "l1":  # the L1 loss leaves the padding past an episode's end out
            batch.update(actions=actions, action_mask=mask)
        # (the 'tokens' head's cross-entropy keeps the padded steps, which repeat the episode's last action,
        # as pi0's loss does, rather than cut each sample's token sequence at a different length)
        return {**self.cast(batch), **lara}

    def neutral_state(self, batch_size: int) -> torch.Tensor:
        """(B, proprio_dim) raw states for action-free frames, which have none: the training data's mean state
        (0 once standardised), or 0 where the model has no state statistics yet (latent pre-training; the
        post-training that follows sets them, so 0 is again its mean). Only the state token's position and the
        projector's bias learn from it."""
        stats = self.model_config.proprio_stats
        mean = torch.tensor(stats["mean"]) if stats else torch.zeros(self.model_config.proprio_dim)
        return mean.float().expand(batch_size, -1).clone()

    def pixel_values(self, samples: list[dict]) -> torch.Tensor:
        """The cameras of each sample as the model reads them: (B, 3, S, S), or (B, N, 3, S, S) for N cameras."""
        views = [torch.stack([s["image"] for s in samples])]  # uint8 (B, 3, H, W) of data.camera
        views += [torch.stack([s[camera] for s in samples]) for camera in self.cameras[1:]]
        pixels = [preprocess_images(v, self.model_config.image_size) for v in views]
        return pixels[0] if len(pixels) == 1 else torch.stack(pixels, 1)
