"""Frame pairs per second per worker: LIBERO HDF5, mp4 by window, mp4 by random access, beside raw decoding.

    python -m lara.benchmarks.perf.data_loader [--videos 6] [--frames 150] [--size 224] [--gop 30] [--window 64]

Writes the same synthetic episodes (a textured scene panning, `--size` px, `--fps`) once as LIBERO HDF5
(the project's writer: gzip, one chunk per frame) and once as H.264 mp4 (PyAV, keyframe every `--gop`
frames), then, in this one process (= one DataLoader worker), counts per CPU second of the process (all
its threads: other load on the machine bends the figures less than wall time would), in interleaved
rounds (medians):
  hdf5        EpisodeDataset samples over the HDF5 files, in EpochShuffleSampler order;
  mp4_window  the same samples over the mp4 files in the window-by-window order the trainer uses;
  mp4_random  over the mp4 files in a plain random order with window=1 (each pair decoded on its own);
  raw         every frame of the same mp4 files decoded in sequence by PyAV to RGB arrays (the limit).
A sample is one (o_t, o_{t+k}) pair with k = `--frame-gap`. ratio = median over rounds of mp4_window / raw
measured back to back (target >= 0.7).
Prints `uptime` first (the machine's load bears on every figure); the last line is
  data_loader hdf5=<pairs/s> mp4_window=<pairs/s> mp4_random=<pairs/s> raw=<frames/s> ratio=<mp4_window/raw>
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lara.data import EpochShuffleSampler, EpisodeDataset
from lara.data.libero_writer import LiberoHDF5Writer


def scene(frames: int, size: int, seed: int) -> np.ndarray:
    """uint8 [T, size, size, 3]: a random texture twice the frame's width, panning one pixel per frame."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(size // 8, size // 4, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), dtype=np.uint8))  # (size, 2 size, 3) blocks of 8 px
    return np.stack([np.roll(texture, -t, axis=1)[:, :size] for t in range(frames)])


def write_sources(root: Path, args) -> tuple[Path, Path]:
    import av

    hdf5, mp4 = root / "hdf5", root / "mp4"
    mp4.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(args.videos):
        frames = scene(args.frames, args.size, index)
        T = len(frames)
        with LiberoHDF5Writer(hdf5 / f"scene_{index}_demo.hdf5", language="pan the camera") as writer:
            writer.add_demo(actions=rng.uniform(-1, 1, (T, 7)), agentview_rgb=frames, ee_states=np.zeros((T, 6)),
                            gripper_states=np.zeros((T, 2)), joint_states=np.zeros((T, 7)))
        with av.open(str(mp4 / f"scene_{index}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=args.fps, options={"g": str(args.gop)})
            stream.width = stream.height = args.size
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    return hdf5, mp4


def pairs_per_second(data: EpisodeDataset, order: list[int], seconds: float) -> float:
    """Samples read per CPU second, walking `order` (cyclically) for about `seconds` of CPU time."""
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for index in order[count % len(order):][:64]:
            data[index]
            count += 1
    return count / (time.process_time() - start)


def raw_decode_rate(files: list[Path], seconds: float) -> float:
    """Frames per CPU second PyAV decodes the files in sequence, to RGB arrays, nothing else."""
    import av

    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for file in files:
            with av.open(str(file)) as container:
                for frame in container.decode(container.streams.video[0]):
                    frame.to_ndarray(format="rgb24")
                    count += 1
    return count / (time.process_time() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6, help="episodes (one file each per format)")
    parser.add_argument("--frames", type=int, default=150, help="frames per episode")
    parser.add_argument("--size", type=int, default=224, help="frame size in pixels (square)")
    parser.add_argument("--fps", type=int, default=30, help="video frame rate")
    parser.add_argument("--gop", type=int, default=30, help="keyframe interval of the mp4 files")
    parser.add_argument("--frame-gap", type=int, default=9, help="k of the pairs")
    parser.add_argument("--window", type=int, default=64, help="frames the window loader decodes at once")
    parser.add_argument("--seconds", type=float, default=12.0, help="time per loader, over all rounds")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (medians are reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        hdf5, mp4 = write_sources(Path(tmp), args)
        common = dict(frame_gap=args.frame_gap, image_size=args.size, action_free=True)
        libero = EpisodeDataset(paths=hdf5, **common)
        windowed = EpisodeDataset(paths=mp4, window=args.window, **common)
        single = EpisodeDataset(paths=mp4, window=1, **common)
        shuffled = torch.randperm(len(single), generator=torch.Generator().manual_seed(0)).tolist()
        runs = {
            "hdf5": lambda s: pairs_per_second(libero, list(EpochShuffleSampler(libero, seed=0)), s),
            "mp4_window": lambda s: pairs_per_second(windowed, windowed.epoch_order(0, 0), s),
            "mp4_random": lambda s: pairs_per_second(single, shuffled, s),
            "raw": lambda s: raw_decode_rate(sorted(mp4.glob("*.mp4")), s),
        }
        # interleaved rounds, median per loader: a change in the machine's load hits all four alike
        measured = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                measured[name].append(run(args.seconds / args.rounds))
        rates = {name: float(np.median(values)) for name, values in measured.items()}
        # the ratio of each round's adjacent measurements, then the median: robust to load drifting between rounds
        ratio = float(np.median(np.array(measured["mp4_window"]) / np.array(measured["raw"])))
    print(f"{args.videos} episodes x {args.frames} frames, {args.size} px, k={args.frame_gap}, gop={args.gop}, "
          f"window={args.window}, one process, torch threads 1, per CPU second")
    print(f"data_loader hdf5={rates['hdf5']:.1f} mp4_window={rates['mp4_window']:.1f} "
          f"mp4_random={rates['mp4_random']:.1f} raw={rates['raw']:.1f} "
          f"ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
