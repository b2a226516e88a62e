"""Text and action tokenization of the reference TokenVLA, following OpenVLA.

Actions: each dimension, normalised to [-1, 1] with q01/q99 statistics (the gripper dimension is left
as is), falls into one of 256 uniform bins, and bin b is the token id `vocab_size - b`: the last 256
ids of the vocabulary, exactly as OpenVLA overwrites Llama-2's least used tokens (ids 31744..31999).

Text: UTF-8 bytes (ids 3..258) with PAD=0, BOS=1, EOS=2: no tokenizer download is needed.
"""

from __future__ import annotations

import numpy as np
import torch

from lara.vla.batch import IGNORE_INDEX, prompt, right_pad

PAD, BOS, EOS, BYTE_OFFSET = 0, 1, 2, 3


def encode_text(text: str) -> list[int]:
    return [BOS] + [BYTE_OFFSET + b for b in text.encode("utf-8")]


class ActionTokenizer:
    def __init__(self, vocab_size: int, n_bins: int = 256):
        if vocab_size < BYTE_OFFSET + 256 + n_bins:
            raise ValueError(f"vocab_size {vocab_size} leaves no room for 256 byte ids and {n_bins} action ids")
        self.vocab_size, self.n_bins = vocab_size, n_bins
        self.bins = np.linspace(-1.0, 1.0, n_bins)
        self.centers = (self.bins[:-1] + self.bins[1:]) / 2.0
        self.first_id, self.last_id = vocab_size - n_bins, vocab_size - 1

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Normalised actions (..., A) in [-1, 1] -> token ids (..., A)."""
        return self.vocab_size - np.digitize(np.clip(actions, -1.0, 1.0), self.bins)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """Token ids (..., A) -> normalised actions (..., A), bin centres."""
        idx = np.clip(self.vocab_size - np.asarray(token_ids) - 1, 0, len(self.centers) - 1)
        return self.centers[idx]


def normalize(actions: np.ndarray, stats: dict, mask: np.ndarray | None = None) -> np.ndarray:
    """OpenVLA's bounds_q99 normalisation: 2 (a - q01) / (q99 - q01) - 1, clipped; `mask` False keeps a dim raw."""
    q01, q99 = np.asarray(stats["q01"]), np.asarray(stats["q99"])
    mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool))) if mask is None else mask
    out = np.clip(2 * (actions - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)
    return np.where(mask, out, actions)


def unnormalize(actions: np.ndarray, stats: dict) -> np.ndarray:
    q01, q99 = np.asarray(stats["q01"]), np.asarray(stats["q99"])
    mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool)))
    return np.where(mask, 0.5 * (actions + 1) * (q99 - q01) + q01, actions)


def build_example(instruction: str, action_ids: np.ndarray | None) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one example; labels keep only the action tokens and EOS, as OpenVLA trains."""
    ids = encode_text(prompt(instruction))
    labels = [IGNORE_INDEX] * len(ids)
    if action_ids is not None:
        tail = [int(t) for t in action_ids] + [EOS]
        ids, labels = ids + tail, labels + tail
    return ids, labels


def collate(examples: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Right-pad a list of (input_ids, labels) into input_ids, attention_mask, labels (B, T)."""
    return right_pad([ids for ids, _ in examples], PAD, [labels for _, labels in examples])
