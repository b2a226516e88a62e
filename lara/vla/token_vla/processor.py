"""The reference TokenVLA (OpenVLA's layout) loaded or built for a recipe, and its stateless processor: by
default one action per observation as 7 action tokens; with `model.build` options an action chunk
(autoregressive tokens or OFT's parallel L1 head), several cameras (`data.extra_cameras`) and the robot state
(`proprio_dim`).

A TokenVLA from latent-action pre-training (adapters/latent_pretrain.py) holds vocabulary rows for its LAM's
codes after the action bins. Every recipe that predicts actions drops them when it loads such a model
(`latent_codes` = 0): the post-trained policy then has the very vocabulary, LM head and softmax of one
trained from scratch, so a comparison of the two differs in the initial weights only, and LAPA likewise replaces
its latent-action head before fine-tuning on actions. Kept, the rows would only be pushed down by the action loss.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from lara.errors import InputError
from lara.vla.batch import cast, default_dtype, lara_inputs, load_kwargs
from lara.vla.token_vla.model import TokenVLA, TokenVLAConfig, preprocess_images, token_vla_config
from lara.vla.token_vla.tokenizer import ActionTokenizer, build_example, collate


def _named(function, skip=()) -> list[str]:
    parameters = inspect.signature(function).parameters.values()
    return [p.name for p in parameters if p.kind is not p.VAR_KEYWORD and p.name != "self" and p.name not in skip]


config = token_vla_config
# the preset's keywords and TokenVLAConfig's own; training sets norm_stats, proprio_stats, cameras, image_size and
# latent_codes (latent_pretrain adds the rows for its LAM's codebook)
BUILD_KEYS = _named(token_vla_config) + _named(TokenVLAConfig.__init__, skip=(
    "vision_config", "text_config", "norm_stats", "proprio_stats", "cameras", "image_size", "latent_codes"))


def load(path: Path | None, build: dict, dtype: torch.dtype, cameras: tuple[str, ...], statistics=None,
         dataset_name: str = "libero", latent_codes: int = 0) -> tuple[TokenVLA, None]:
    """From `path`, or built from `build`; its LAM code rows set to `latent_codes`, its cameras checked against
    the data's, and the training statistics in its config (predict_action un-normalises with them)."""
    if path is not None:
        model = TokenVLA.from_pretrained(path, **load_kwargs(dtype))
    else:
        with default_dtype(dtype):
            model = TokenVLA(token_vla_config(**build, cameras=list(cameras)))
    if model.config.latent_codes and not latent_codes:
        print(f"model.path={path}: its {model.config.latent_codes} LAM code rows (latent-action pre-training) "
              "are dropped; this recipe predicts actions")
    model.set_latent_codes(latent_codes)  # action and text ids keep their rows
    if list(model.config.cameras) != list(cameras):
        raise InputError(f"the TokenVLA reads the cameras {model.config.cameras}, the data gives {list(cameras)} "
                         "(data.camera + data.extra_cameras): make them the same")
    if statistics is not None:
        action = statistics.action
        model.config.norm_stats = {"q01": action.q01.tolist(), "q99": action.q99.tolist(), "mask": action.mask.tolist()}
    if model.config.proprio_dim and statistics is not None:  # None: frames only (latent pre-training)
        proprio = statistics.proprio
        if proprio is None or len(proprio.mean) != model.config.proprio_dim:
            found = "no robot state" if proprio is None else f"a {len(proprio.mean)}-D robot state"
            raise InputError(f"model.build.proprio_dim={model.config.proprio_dim}, but the data has {found} "
                             "(LIBERO: ee_states + gripper_states = 8)")
        if model.config.proprio_stats is None:  # a pretrained model keeps the statistics it was trained on
            model.config.proprio_stats = {"mean": proprio.mean.tolist(), "std": proprio.std.tolist()}
    return model, None


def checkpointed_modules(vla) -> list:
    """Its towers (SigLIP / ResNet, Llama) checkpoint their own blocks."""
    return [vla]


class Processor:
    """Reader samples -> TokenVLA inputs (+ the LARA keys), from the model config alone."""

    def __init__(self, model_config: TokenVLAConfig, statistics=None, tokenizer=None, dtype=torch.float32):
        self.config, self.dtype = model_config, dtype
        self.action_tokenizer = ActionTokenizer(model_config.text_config.vocab_size - model_config.latent_codes,
                                                model_config.n_action_bins)

    def __call__(self, samples: list[dict]) -> dict:
        lara = lara_inputs(samples)
        cfg = self.config
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
        return {**cast(batch, self.dtype), **lara}

    def neutral_state(self, batch_size: int) -> torch.Tensor:
        """(B, proprio_dim) raw states for action-free frames, which have none: the training data's mean state
        (0 once standardised), or 0 where the model has no state statistics yet (latent pre-training; the
        post-training that follows sets them, so 0 is again its mean). Only the state token's position and the
        projector's bias learn from it."""
        stats = self.config.proprio_stats
        mean = torch.tensor(stats["mean"]) if stats else torch.zeros(self.config.proprio_dim)
        return mean.float().expand(batch_size, -1).clone()

    def pixel_values(self, samples: list[dict]) -> torch.Tensor:
        """The cameras of each sample as the model reads them: (B, 3, S, S), or (B, N, 3, S, S) for N cameras."""
        views = [torch.stack([s["image"] for s in samples])]  # uint8 (B, 3, H, W) of data.camera
        views += [torch.stack([s[camera] for s in samples]) for camera in self.config.cameras[1:]]
        pixels = [preprocess_images(v, self.config.image_size) for v in views]
        return pixels[0] if len(pixels) == 1 else torch.stack(pixels, 1)
