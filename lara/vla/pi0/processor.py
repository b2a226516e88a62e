"""How pi0 (transformers `PI0ForConditionalGeneration`) sees a sample or an observation: one stateless processor,
so training and rollouts feed it identically. pi0.5 (lara/vla/pi05) differs only in its prompt.

    input_ids      [<image> x cameras x patches] [BOS] instruction "\\n"   (PI0Processor's layout), right-padded
    pixel_values   (B, cameras, 3, S, S) in [-1, 1]: bicubic resize to SigLIP's size, (x / 255 - 0.5) / 0.5
    state          (B, max_state_dim): proprio (ee pos, ee axis-angle, gripper qpos) standardised with the
                   dataset's proprio mean / std (PI0Processor's normalisation), zero-padded
    actions        (B, chunk_size, max_action_dim): the reader's q01/q99-normalised chunk, zero-padded

Text: a tokenizer saved beside the weights when there is one (a converted pi0 checkpoint). A pi0 built from a
config has none, so the instruction's UTF-8 bytes map onto the vocabulary deterministically (`ByteTokenizer`),
skipping the pad / BOS / EOS and image ids: the instruction is distinguishable, but not language a pretrained
PaliGemma knows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lara.data.statistics import DatasetStatistics
from lara.policy import ACTION_DIM
from lara.vla.batch import cast, clean_instruction, lara_inputs, right_pad

CAMERAS_KEY = "lara_cameras"  # the obs keys of the cameras a pi0 was trained on, kept in its config.json
DEFAULT_CAMERAS = ("agentview_rgb",)


class ByteTokenizer:
    """BOS, then each UTF-8 byte b of the text as the b-th id (modulo) of those that are not special or <image>."""

    def __init__(self, vocab_size: int, bos_id: int, reserved: set[int]):
        self.bos_id = bos_id
        self.free = [i for i in range(vocab_size) if i not in reserved | {bos_id}]
        if not self.free:
            raise ValueError(f"a vocabulary of {vocab_size} ids leaves none for text besides {sorted(reserved)}")

    def __call__(self, text: str) -> list[int]:
        return [self.bos_id] + [self.free[b % len(self.free)] for b in text.encode("utf-8")]


class Processor:
    """Samples (training) or observations (rollouts) -> PI0ForConditionalGeneration inputs, from the model config,
    the dataset statistics and the tokenizer saved with the model (None: `ByteTokenizer`)."""

    name = "pi0"

    def __init__(self, model_config, statistics: DatasetStatistics | None = None, tokenizer=None,
                 dtype: torch.dtype = torch.float32):
        vlm = model_config.vlm_config
        text, vision = vlm.text_config, vlm.vision_config
        self.image_token_id = vlm.image_token_id
        self.tokens_per_image = (vision.image_size // vision.patch_size) ** 2
        self.image_size = vision.image_size
        self.chunk_size, self.max_action_dim = model_config.chunk_size, model_config.max_action_dim
        self.max_state_dim = getattr(model_config, "max_state_dim", None)  # pi0.5 has no state input
        if self.max_action_dim < ACTION_DIM:
            raise ValueError(f"{self.name}'s max_action_dim is {self.max_action_dim}; LIBERO actions need {ACTION_DIM}")
        self.cameras = list(getattr(model_config, CAMERAS_KEY, None) or DEFAULT_CAMERAS)
        self.statistics, self.tokenizer, self.dtype = statistics, tokenizer, dtype
        if tokenizer is not None:
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            bos = tokenizer.bos_token or ""
            self._encode = lambda t: tokenizer(f"{bos}{t}", add_special_tokens=False)["input_ids"]
        else:
            self.pad_id = text.pad_token_id if text.pad_token_id is not None else 0
            reserved = {i for i in (text.pad_token_id, text.eos_token_id, self.image_token_id) if i is not None}
            self._encode = ByteTokenizer(text.vocab_size, text.bos_token_id, reserved)

    def prompt(self, instruction: str, proprio: torch.Tensor | None) -> str:
        """The text after BOS: pi0 reads the state through its own input, not the prompt."""
        return clean_instruction(instruction) + "\n"

    def text(self, instructions: list[str], proprio: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids and attention_mask (B, T): image tokens of every camera, then BOS + the prompt."""
        image = [self.image_token_id] * (self.tokens_per_image * len(self.cameras))
        rows = [image + list(self._encode(self.prompt(text, None if proprio is None else proprio[i])))
                for i, text in enumerate(instructions)]
        batch = right_pad(rows, self.pad_id)
        return batch["input_ids"], batch["attention_mask"]

    def images(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One uint8 (B, 3, H, W) tensor per camera -> pixel_values (B, n, 3, S, S), pixel_attention_mask (B, n)."""
        if len(views) != len(self.cameras):
            raise ValueError(f"{self.name} was set up for {len(self.cameras)} camera(s) {self.cameras}, got "
                             f"{len(views)} image(s)")
        x = torch.stack(views, 1).float()  # (B, n, 3, H, W)
        b, n = x.shape[:2]
        x = x.flatten(0, 1)
        if x.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 255)
        pixels = (x / 255.0 - 0.5) / 0.5  # SigLIP: mean 0.5, std 0.5
        return pixels.unflatten(0, (b, n)), torch.ones(b, n, dtype=torch.bool)

    def state(self, proprio: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """(B, D) raw proprio -> (B, max_state_dim); None (action-free video) -> zeros."""
        if proprio is None:
            return torch.zeros(batch_size, self.max_state_dim)
        proprio = proprio.float()
        if proprio.shape[-1] > self.max_state_dim:
            raise ValueError(f"proprio has {proprio.shape[-1]} dims, pi0's max_state_dim is {self.max_state_dim}")
        stats = self.statistics.proprio if self.statistics is not None else None
        if stats is not None:
            mean, std = (torch.as_tensor(a, dtype=torch.float32) for a in (stats.mean, stats.std))
            proprio = (proprio - mean) / (std + 1e-8)
        return F.pad(proprio, (0, self.max_state_dim - proprio.shape[-1]))

    def actions(self, chunk: torch.Tensor) -> torch.Tensor:
        """(B, H, 7) normalised action chunk -> (B, chunk_size, max_action_dim)."""
        if chunk.shape[1] != self.chunk_size:
            raise ValueError(f"the action chunk has {chunk.shape[1]} steps, {self.name}'s chunk_size is "
                             f"{self.chunk_size}: set data.action_horizon={self.chunk_size} (or build {self.name} "
                             f"with chunk_size={chunk.shape[1]})")
        return F.pad(chunk.float(), (0, self.max_action_dim - chunk.shape[-1]))

    def observation(self, instructions: list[str], views: list[torch.Tensor], proprio: torch.Tensor | None) -> dict:
        """The model's inputs for one batch of observations (no actions): what training and sampling share."""
        input_ids, attention_mask = self.text(instructions, proprio)
        pixel_values, pixel_attention_mask = self.images(views)
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                      pixel_attention_mask=pixel_attention_mask)
        if self.max_state_dim:  # pi0's state input (pi0.5 reads the state in its prompt)
            inputs["state"] = self.state(proprio, len(instructions))
        return inputs

    def __call__(self, samples: list[dict]) -> dict:
        lara = lara_inputs(samples)
        views = [torch.stack([s["image"] for s in samples])]  # (B, 3, H, W) of data.camera
        views += [torch.stack([s[camera] for s in samples]) for camera in self.cameras[1:]]
        if lara.get("lam_action_free"):
            # no robot action or state: neutral (zero) ones keep the action positions; LaraModel leaves the
            # base loss of this batch out
            proprio = None
            actions = torch.zeros(len(samples), self.chunk_size, self.max_action_dim)
        else:
            proprio = torch.stack([s["proprio"] for s in samples])  # (B, 8) raw
            actions = self.actions(torch.stack([s["actions"] for s in samples]))  # (B, chunk, max_action_dim)
        batch = self.observation([s["instruction"] for s in samples], views, proprio)
        return {**cast({**batch, "actions": actions}, self.dtype), **lara}
