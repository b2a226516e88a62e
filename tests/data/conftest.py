"""Small LIBERO files written with the project's own writer (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from lara.data.libero_writer import LiberoHDF5Writer


@pytest.fixture(autouse=True)
def _scheduling_kept():
    """The fixtures drive SVT-AV1 through PyAV directly, which leaves the test process under SCHED_FIFO 99
    (as root); every later child (roscore, the sim) would inherit it. Restore it after each test."""
    import os

    saved = os.sched_getscheduler(0), os.sched_getparam(0)
    yield
    if (os.sched_getscheduler(0), os.sched_getparam(0)) != saved:
        os.sched_setscheduler(0, *saved)


def demo_arrays(T: int, *, seed: int, size: int = 16) -> dict:
    """One episode whose frame t is identifiable: pixel [0, 0, 0] = t, pixel [0, 0, 1] = seed, and
    rows hold their own index (so a vertical flip is visible)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((T, size, size, 3), dtype=np.uint8)
    frames[:, :, :, 2] = np.arange(size, dtype=np.uint8)[None, :, None]  # row index in the blue channel
    frames[:, 0, 0, 0] = np.arange(T)
    frames[:, 0, 0, 1] = seed % 256  # uint8 marker (numpy >= 2 refuses to wrap silently)
    actions = rng.uniform(-1, 1, size=(T, 7))
    actions[:, :6] *= rng.uniform(0.1, 2.0, size=6)  # different ranges per dimension
    actions[:, 6] = np.where(rng.random(T) > 0.5, 1.0, -1.0)  # LIBERO gripper: -1 open, +1 close
    return dict(
        actions=actions,
        agentview_rgb=frames,
        eye_in_hand_rgb=255 - frames,
        ee_states=rng.normal(size=(T, 6)),
        gripper_states=rng.normal(size=(T, 2)),
        joint_states=rng.normal(size=(T, 7)),
    )


def write_file(path, lengths, *, seed: int = 0, language: str = "put the bowl on the plate", size: int = 16):
    """Write one file with demos of the given lengths; returns the list of per-demo arrays."""
    demos = [demo_arrays(T, seed=seed * 100 + i, size=size) for i, T in enumerate(lengths)]
    with LiberoHDF5Writer(path, language=language) as writer:
        for arrays in demos:
            writer.add_demo(**arrays, attrs={"success": True})
    return demos


@pytest.fixture(name="demo_arrays")
def demo_arrays_fixture():
    return demo_arrays


@pytest.fixture(name="write_file")
def write_file_fixture():
    return write_file


@pytest.fixture
def libero_dir(tmp_path):
    """Two files, three demos; returns (directory, {file name: [demo arrays]})."""
    written = {
        "a_demo.hdf5": write_file(tmp_path / "a_demo.hdf5", [20, 13], seed=1, language="open the drawer"),
        "b_demo.hdf5": write_file(tmp_path / "b_demo.hdf5", [25], seed=2, language="close the drawer"),
    }
    return tmp_path, written
