"""Records the executed steps of a robot episode and saves it as a LIBERO HDF5 file, atomically.

One file per episode, `<episodes_dir>/<timestamp>_<instruction>.hdf5`, written by the same
`LiberoHDF5Writer` as the scripted demos, so the trainer reads robot episodes unchanged. Only
executed steps are kept (held periods are not demonstrations); `actions` are the actions *after*
the safety layer, in the policy's units. The operator's success flag becomes the demo's `success`
attribute (and LIBERO's last-step reward).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from lara.data.libero_writer import LiberoHDF5Writer
from lara.errors import InputError


class EpisodeRecorder:
    def __init__(self, episodes_dir: str | Path) -> None:
        self.episodes_dir = Path(episodes_dir)
        self.instruction: Optional[str] = None
        self._steps: list[dict] = []
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the episodes folder and check that a file can be written there, so that a bad `episodes_dir`
        stops the node at start, not at the end of the first episode."""
        where = f"episodes_dir {str(self.episodes_dir)!r}"
        if self.episodes_dir.exists() and not self.episodes_dir.is_dir():
            raise InputError(f"{where} is a file, expected a folder for the episodes; give another episodes_dir.")
        try:
            self.episodes_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.episodes_dir, prefix=".write_check_")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise InputError(f"{where}: cannot write episodes there ({error.strerror}); give a writable folder.") from None

    @property
    def num_steps(self) -> int:
        return len(self._steps)

    def begin(self, instruction: str) -> None:
        with self._lock:
            self.instruction, self._steps = instruction, []

    def add_step(self, *, action: np.ndarray, agentview_rgb: np.ndarray, ee_pos: np.ndarray, ee_ori: np.ndarray,
                 gripper_qpos: np.ndarray, joint_qpos: np.ndarray, eye_in_hand_rgb: Optional[np.ndarray] = None) -> None:
        with self._lock:
            if self.instruction is None:
                raise RuntimeError("EpisodeRecorder.add_step before begin(instruction).")
            self._steps.append({"actions": np.asarray(action, np.float64), "agentview_rgb": agentview_rgb,
                                "eye_in_hand_rgb": eye_in_hand_rgb,
                                "ee_states": np.concatenate([ee_pos, ee_ori]).astype(np.float64),
                                "gripper_states": np.asarray(gripper_qpos, np.float64),
                                "joint_states": np.asarray(joint_qpos, np.float64)})

    def discard(self) -> None:
        with self._lock:
            self.instruction, self._steps = None, []

    def save(self, success: bool, attrs: Optional[dict] = None) -> Optional[Path]:
        """Write the episode; returns its path, or None when no step was executed (nothing to save)."""
        with self._lock:
            steps, instruction = self._steps, self.instruction
            self.instruction, self._steps = None, []
        if not steps or instruction is None:
            return None
        slug = re.sub(r"[^a-z0-9]+", "_", instruction.lower()).strip("_")[:60] or "episode"
        path = self.episodes_dir / f"{time.strftime('%Y%m%d_%H%M%S')}_{int(time.time() * 1000) % 1000:03d}_{slug}.hdf5"
        stacked = {key: np.stack([s[key] for s in steps]) for key in steps[0] if key != "eye_in_hand_rgb"}
        wrist = None
        if all(s["eye_in_hand_rgb"] is not None for s in steps):
            wrist = np.stack([s["eye_in_hand_rgb"] for s in steps])
        with LiberoHDF5Writer(path, language=instruction, env_args={"env_name": "real_franka"}) as writer:
            writer.add_demo(eye_in_hand_rgb=wrist, attrs={"success": bool(success), **(attrs or {})}, **stacked)
        return path
