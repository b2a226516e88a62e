"""Tiny LIBERO-format files and the overrides that shrink every preset to a seconds-long CPU run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lara.data.libero_writer import LiberoHDF5Writer


def write_demos(directory: Path, size: int = 32) -> Path:
    """Two files, three episodes: a square drifting across the image, actions = its drift (+ gripper)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, lengths, language in (("a_demo.hdf5", [30, 26], "put the bowl on the plate"),
                                    ("b_demo.hdf5", [28], "open the drawer")):
        with LiberoHDF5Writer(directory / name, language=language) as writer:
            for T in lengths:
                drift = rng.uniform(-1, 1, size=2)
                xy = np.clip(8 + np.cumsum(np.tile(drift, (T, 1)), 0), 0, size - 7).astype(int)
                frames = np.full((T, size, size, 3), 40, np.uint8)
                for t, (x, y) in enumerate(xy):
                    frames[t, y : y + 6, x : x + 6] = (230, 60, 30)
                actions = np.zeros((T, 7))
                actions[:, :2] = drift + rng.normal(0, 0.05, size=(T, 2))
                actions[:, 6] = np.where(np.arange(T) > T // 2, 1.0, -1.0)
                writer.add_demo(actions=actions, agentview_rgb=frames, eye_in_hand_rgb=frames[:, ::-1].copy(),
                                ee_states=rng.normal(size=(T, 6)), gripper_states=rng.normal(size=(T, 2)),
                                joint_states=rng.normal(size=(T, 7)), attrs={"success": True})
    return directory


# a 32-px model of each family that builds from a config (pi0, pi0.5: chunks of the preset's action_horizon, 10)
TINY_BUILD = {"token_vla": "{width: 32, layers: 1, image_size: 32}",
              "pi0": "{width: 32, expert_width: 16, layers: 1, image_size: 32, chunk_size: 10, vocab_size: 512}",
              "pi05": "{width: 32, expert_width: 16, layers: 1, image_size: 32, chunk_size: 10, vocab_size: 512}"}


def tiny(data: Path, out: Path, steps: int = 4, every: int = 2, family: str = "token_vla") -> list[str]:
    """Overrides for a preset: a 32-px model (openvla: the one at its model.path) and LAM, `steps` steps, a
    checkpoint every `every`."""
    build = [f"model.build={TINY_BUILD[family]}"] if family in TINY_BUILD else []
    return [f"data.paths=[{data}]", f"output_dir={out}", f"train.steps={steps}", f"train.checkpoint_every={every}",
            "train.log_every=1", "train.batch_size=4", "train.warmup_steps=1", "train.wandb.mode=disabled",
            "train.progress=false", *build, "data.image_size=32",
            "lara.lam.image_size=32", "lara.lam.width=32", "lara.lam.idm_layers=1", "lara.lam.fdm_layers=1",
            "posttrain.lam_warmup_steps=0"]
