"""Does lerobot's own `LeRobotDataset` load what `lara data convert --to lerobot` writes, and does lara read
what lerobot writes? Not part of the test suite: lerobot needs a separate ~6 GB venv (torchvision does not
import beside the CPU torch of lara's venv). Set up as in issue 11 (lerobot 0.4.x needs Python 3.11), in the
project (`.venv-*/` is ignored by git):

    python3.11 -m venv .venv-lerobot
    .venv-lerobot/bin/pip install torch==2.14.1 torchvision==0.29.1
    .venv-lerobot/bin/pip install --no-deps lerobot==0.4.4 torchcodec
    .venv-lerobot/bin/pip install "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" jsonlines \
        "packaging<26" einops draccus==0.10.0 deepdiff termcolor "imageio[ffmpeg]" opencv-python-headless \
        gymnasium pillow accelerate
    .venv/bin/python -m lara.benchmarks.interop.lerobot_check --lerobot-python .venv-lerobot/bin/python

torchvision 0.29 has no `torchvision.io.VideoReader`, so lerobot 0.4.4's "pyav" backend fails there; its
"torchcodec" backend (torchcodec 0.17 on the system FFmpeg) is used.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LENGTHS = [12, 7, 9]
TASKS = ["open the drawer", "open the drawer", "close the drawer"]
FPS = 20


def frames(episode: int, T: int, H: int = 24, W: int = 32) -> np.ndarray:
    """Smooth frames: red says the frame index, green the episode (a codec keeps them apart)."""
    out = np.zeros((T, H, W, 3), np.uint8)
    out[..., 0] = (20 + 7 * np.arange(T))[:, None, None]
    out[..., 1] = 40 + 50 * episode
    out[..., 2] = np.linspace(0, 200, W, dtype=np.uint8)[None, None, :]
    return out


def nearest(decoded: np.ndarray, reference: np.ndarray) -> list[int]:
    diff = np.abs(decoded[:, None].astype(np.int16) - reference[None].astype(np.int16)).mean(axis=(2, 3, 4))
    return diff.argmin(axis=1).tolist()


def arrays(episode: int, T: int) -> dict:
    rng = np.random.default_rng(episode)
    return {"action": rng.normal(size=(T, 7)), "state": rng.normal(size=(T, 8))}


def lara_write(work: Path, codec: str) -> None:
    from lara.data.convert import main
    from lara.data.libero_writer import LiberoHDF5Writer

    (work / "src").mkdir(parents=True)
    for e, (T, task) in enumerate(zip(LENGTHS, TASKS)):
        a, f = arrays(e, T), frames(e, T)
        with LiberoHDF5Writer(work / "src" / f"{e}.hdf5", language=task) as writer:
            writer.add_demo(actions=a["action"], agentview_rgb=f, eye_in_hand_rgb=f[:, ::-1].copy(),
                            ee_states=a["state"][:, :6], gripper_states=a["state"][:, 6:], joint_states=np.zeros((T, 7)))
    assert main([str(work / "src"), "--to", "lerobot", str(work / "ds"), "--codec", codec, "--fps", str(FPS)]) == 0


def lerobot_load(work: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    data = LeRobotDataset("local/lara", root=work / "ds", video_backend="torchcodec")
    assert (len(data), data.num_episodes) == (sum(LENGTHS), len(LENGTHS)), (len(data), data.num_episodes)
    worst, start = 0.0, 0
    for e, T in enumerate(LENGTHS):
        a, f = arrays(e, T), frames(e, T)
        decoded = []
        for t in range(T):
            item = data[start + t]
            # lerobot hands out float32 tensors whatever the stored dtype
            assert np.array_equal(item["action"].numpy(), a["action"][t].astype(np.float32)), (e, t)
            assert np.array_equal(item["observation.state"].numpy(), a["state"][t].astype(np.float32)), (e, t)
            assert item["task"] == TASKS[e], (item["task"], TASKS[e])
            decoded.append((item["observation.images.agentview"].permute(1, 2, 0).numpy() * 255).round())
        decoded = np.stack(decoded)
        assert nearest(decoded, f) == list(range(T)), (e, nearest(decoded, f))
        worst = max(worst, float(np.abs(decoded - f).mean(axis=(1, 2, 3)).max()))
        start += T
    print(f"lerobot loads lara's dataset: {len(data)} frames, {data.num_episodes} episodes, actions/states/tasks "
          f"exact (float32), every frame the right one, worst frame mean |err| {worst:.2f}/255")


def lerobot_write(work: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    size = {"shape": (24, 32, 3), "names": ["height", "width", "channels"]}
    features = {"action": {"dtype": "float32", "shape": (7,), "names": None},
                "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
                "observation.images.top": {"dtype": "video", **size}, "observation.images.wrist": {"dtype": "image", **size}}
    data = LeRobotDataset.create("local/theirs", fps=FPS, features=features, root=work / "theirs", use_videos=True)
    for e, (T, task) in enumerate(zip(LENGTHS, TASKS)):
        a, f = arrays(e, T), frames(e, T)
        for t in range(T):
            data.add_frame({"action": a["action"][t].astype(np.float32), "observation.state": a["state"][t].astype(np.float32),
                            "observation.images.top": f[t], "observation.images.wrist": f[t], "task": task})
        data.save_episode()
    data.finalize()


def lara_read(work: Path) -> None:
    from lara.data.lerobot import LeRobotSource

    source = LeRobotSource(work / "theirs")
    episodes = source.episodes()
    assert [(ep.length, ep.instruction) for ep in episodes] == list(zip(LENGTHS, TASKS))
    shared = {ep.key["videos"]["observation.images.top"][0] for ep in episodes}
    worst = 0.0
    for e, ep in enumerate(episodes):
        a, f = arrays(e, ep.length), frames(e, ep.length)
        assert np.array_equal(ep.actions, a["action"].astype(np.float32))
        assert np.array_equal(ep.states, a["state"].astype(np.float32))
        top = ep.frames("observation.images.top", list(range(ep.length)))
        assert nearest(top, f) == list(range(ep.length))
        assert np.array_equal(ep.frames("observation.images.wrist", list(range(ep.length))), f)
        worst = max(worst, float(np.abs(top.astype(int) - f).mean(axis=(1, 2, 3)).max()))
    print(f"lara reads lerobot's dataset: {len(episodes)} episodes in {len(shared)} mp4 file(s), actions/states/"
          f"tasks exact, PNG frames exact, video frames the right ones, worst frame mean |err| {worst:.2f}/255")


STEPS = {"lara-write": lara_write, "lerobot-load": lerobot_load, "lerobot-write": lerobot_write, "lara-read": lara_read}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lerobot-python", type=Path, help="the interpreter of a venv with lerobot installed")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--codec", default="av1", choices=["av1", "h264", "png"])
    args = parser.parse_args()
    if args.step == "lara-write":
        lara_write(args.work, args.codec)
        return 0
    if args.step:
        STEPS[args.step](args.work)
        return 0
    if args.lerobot_python is None:
        parser.error("--lerobot-python is required")
    work = Path(tempfile.mkdtemp(prefix="lerobot_check_"))
    try:
        for step, python in (("lara-write", sys.executable), ("lerobot-load", args.lerobot_python),
                             ("lerobot-write", args.lerobot_python), ("lara-read", sys.executable)):
            command = [str(python), str(Path(__file__).resolve()), "--step", step, "--work", str(work),
                       "--codec", args.codec]
            subprocess.run(command, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
