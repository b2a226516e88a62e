"""`lara probe`: how well does a representation of (o_t, o_{t+k}) encode the action, the task, and (codes) both?

    lara probe --data data/probe_object64 --represent lam:runs/x/final/lara untrained_lam pixel_diff vision:dinov2 \\
        --out results/probe.json --plot results/probe.png [--distractors]
    lara probe --synthetic 2000 --represent pixel_diff untrained_lam           # moving-square pairs, no files

Data come from any reader the project has (LIBERO HDF5, LeRobot, video folders with actions); pairs are split by
episode (per task, a `--test-fraction` of its episodes is held out; a further share of the training episodes
picks the ridge penalty). For each representation:
  how   ridge and a small MLP regress the normalised action chunk a_{t:t+k}: R^2 overall and per action dim
  what  a linear classifier of the task (the instruction): accuracy and macro-F1
  codes usage, perplexity, code -> action-cluster purity (LAMs with a codebook)
With `--distractors` every representation is computed again on frames with action-correlated distractors
(`lara.benchmarks.probes.distractors`) and the report gives each one's drop in R^2.
Prints a table, writes JSON (`--out`) and a bar plot (`--plot`). The same seed gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lara.benchmarks.probes import fit
from lara.benchmarks.probes.distractors import DistractorConfig, distract_pairs
from lara.benchmarks.probes.representations import Features, compute
from lara.cli import ArgumentParser, integer, number
from lara.config import check_fits
from lara.errors import InputError
from lara.outputs import check_new, save_figure, settings, write_text

SYNTHETIC_DIRECTIONS = ("move up", "move down", "move left", "move right")


@dataclass
class PairData:
    """Frame pairs with their action chunks, episodes and tasks."""

    frames: torch.Tensor  # (N, 2, 3, H, W) uint8
    actions: torch.Tensor  # (N, k, A) normalised action chunk a_{t:t+k}
    episodes: torch.Tensor  # (N,) episode id: the unit of the split
    labels: torch.Tensor  # (N,) task index into `tasks`
    tasks: list[str]

    @property
    def motion(self) -> torch.Tensor:
        """(N, 2) the arm's motion over the pair (mean of the first two action dims): what distractors follow."""
        return self.actions[:, :, :2].mean(1)


def load_pairs(paths: list[Path], frame_gap: int, image_size: int, camera: str, stride: int) -> PairData:
    """Every `stride`-th complete pair of every episode of the sources, with its action chunk."""
    from lara.data import EpisodeDataset

    data = EpisodeDataset(paths=paths, frame_gap=frame_gap, action_horizon=1, image_size=image_size, camera=camera,
                         drop_incomplete=True)
    if data.statistics is None:
        raise InputError(f"{[str(p) for p in paths]}: these sources have no actions; the probe regresses actions, "
                         "so it needs demonstrations (LIBERO HDF5, LeRobot) rather than action-free video.")
    pairs = -(-len(data) // stride)
    # each pair's two frames as uint8, and once more as floats where the representations read them
    check_fits(pairs * 2 * 3 * image_size ** 2 * (1 + 4), f"--image-size {image_size} for {pairs} pairs",
               "give a smaller --image-size (64 is the LAM's) or a larger --stride")
    frames, actions, episodes, instructions = [], [], [], []
    for i in range(0, len(data), stride):
        s = data[i]
        frames.append(s["lam_frames"])
        actions.append(s["lam_actions"])
        episodes.append(s["episode_index"])
        instructions.append(s["instruction"])
    tasks = sorted(set(instructions))
    return PairData(torch.stack(frames), torch.stack(actions), torch.tensor(episodes),
                    torch.tensor([tasks.index(x) for x in instructions]), tasks)


def synthetic_pairs(n: int, seed: int, size: int = 16, any_contrast: bool = True) -> PairData:
    """Moving-square pairs (`synthetic.moving_object_pairs`), each its own episode; the task is the dominant
    direction of the move (up, down, left, right). With `any_contrast` (default) half the squares are dark on
    a light background, so the raw pixel difference holds the move only up to a sign."""
    from lara.benchmarks.probes.synthetic import moving_object_pairs

    frames, actions, _ = moving_object_pairs(n, size=size, square=4, max_shift=3, seed=seed, any_contrast=any_contrast)
    dy, dx = actions[:, 0], actions[:, 1]
    vertical = dy.abs() >= dx.abs()
    labels = torch.where(vertical, (dy > 0).long(), 2 + (dx > 0).long())  # up, down, left, right
    return PairData(frames, actions[:, None], torch.arange(n), labels, list(SYNTHETIC_DIRECTIONS))


def split_by_episode(data: PairData, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(test, validation) boolean masks over pairs: per task, a share of its episodes is held out for testing,
    and the same share of the remaining ones validates the ridge penalty. An episode is never in two splits."""
    g = torch.Generator().manual_seed(seed)
    test_eps, val_eps = [], []
    for task in range(len(data.tasks)):
        eps = data.episodes[data.labels == task].unique()
        eps = eps[torch.randperm(len(eps), generator=g)]
        n_test = max(1, round(test_fraction * len(eps))) if len(eps) > 1 else 0
        n_val = max(1, round(test_fraction * (len(eps) - n_test))) if len(eps) - n_test > 2 else 0
        test_eps.append(eps[:n_test])
        val_eps.append(eps[n_test:n_test + n_val])
    test = torch.isin(data.episodes, torch.cat(test_eps))
    if not test.any() or test.all():
        raise InputError(f"{int(data.episodes.unique().numel())} episode(s): the probe needs at least two episodes "
                         "(one to fit, one held out); give more data.")
    return test, torch.isin(data.episodes, torch.cat(val_eps))


def probe(features: Features, data: PairData, test: torch.Tensor, validation: torch.Tensor, seed: int,
          mlp_steps: int, clusters: int) -> dict:
    """Every probe of one representation on one split."""
    x, y = features.x, data.actions.flatten(1)  # (N, D), (N, k * A)
    train = ~test
    action_dim = data.actions.shape[-1]
    pred, penalty = fit.ridge(x[train], y[train], x[test], validation[train])
    out = {"dims": x.shape[1], "ridge": fit.summarise_r2(fit.r2_per_output(pred, y[test]), action_dim),
           "ridge_penalty": penalty}
    if mlp_steps:
        pred = fit.mlp(x[train], y[train], x[test], seed, steps=mlp_steps)
        out["mlp"] = fit.summarise_r2(fit.r2_per_output(pred, y[test]), action_dim)
    if len(data.tasks) > 1:
        out["task"] = fit.classify(x[train], data.labels[train], x[test], data.labels[test], len(data.tasks))
    if features.codes is not None:
        out["codes"] = fit.code_stats(features.codes[test], features.num_codes, y[train], y[test], clusters, seed)
    return out


def run(data: PairData, specs: list[str], image_size: int, seed: int = 0, test_fraction: float = 0.25,
        mlp_steps: int = 600, clusters: int = 8, distractors: DistractorConfig | None = None) -> dict:
    """The whole probe: representations x {clean, distracted} -> a report (what `lara probe` writes)."""
    test, validation = split_by_episode(data, test_fraction, seed)
    conditions = {"clean": data.frames}
    if distractors is not None:
        conditions["distractors"] = distract_pairs(data.frames, data.motion, distractors, seed)
    rows: dict[str, dict] = {}
    for condition, frames in conditions.items():
        for features in compute(specs, frames, image_size, seed):
            start = time.time()
            result = probe(features, data, test, validation, seed, mlp_steps, clusters)
            result["seconds"] = round(time.time() - start, 1)
            rows.setdefault(features.name, {})[condition] = result
    if distractors is not None:
        for row in rows.values():
            row["ridge_r2_drop"] = row["clean"]["ridge"]["r2"] - row["distractors"]["ridge"]["r2"]
    return {"pairs": {"train": int((~test).sum()), "test": int(test.sum()), "validation": int(validation.sum()),
                      "episodes": int(data.episodes.unique().numel())},
            "tasks": data.tasks, "action_dims": data.actions.shape[-1], "frame_gap": data.actions.shape[1],
            "distractors": distractors.model_dump() if distractors is not None else None,
            "seed": seed, "representations": rows}


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(report: dict) -> str:
    """The report as a text table: one line per representation and condition."""
    head = f"{'representation':28s} {'condition':11s} {'ridge R2':>8s} {'MLP R2':>7s} {'task acc':>8s} {'task F1':>7s} " \
           f"{'codes':>5s} {'perplex':>7s} {'purity':>6s} {'chance':>6s}"
    lines = [head, "-" * len(head)]
    for name, row in report["representations"].items():
        for condition in ("clean", "distractors"):
            r = row.get(condition)
            if r is None:
                continue
            codes = r.get("codes", {})
            lines.append(f"{name:28s} {condition:11s} {_cell(r['ridge']['r2']):>8s} "
                         f"{_cell(r.get('mlp', {}).get('r2')):>7s} {_cell(r.get('task', {}).get('accuracy')):>8s} "
                         f"{_cell(r.get('task', {}).get('macro_f1')):>7s} {str(codes.get('codes_used', '-')):>5s} "
                         f"{_cell(codes.get('perplexity'), 1):>7s} {_cell(codes.get('purity')):>6s} "
                         f"{_cell(codes.get('purity_chance')):>6s}")
        if "ridge_r2_drop" in row:
            lines.append(f"{'':28s} {'drop':11s} {row['ridge_r2_drop']:8.3f}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Bars of ridge and MLP R^2 per representation (and with distractors), and task accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["representations"])
    rows = report["representations"]
    series = [("ridge R2", lambda r: r["ridge"]["r2"]), ("MLP R2", lambda r: r.get("mlp", {}).get("r2")),
              ("task accuracy", lambda r: r.get("task", {}).get("accuracy"))]
    conditions = [c for c in ("clean", "distractors") if any(c in row for row in rows.values())]
    bars = [(f"{label} ({c})" if len(conditions) > 1 else label, get, c) for label, get in series for c in conditions]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    width = 0.8 / len(bars)
    for j, (label, get, condition) in enumerate(bars):
        values = [get(rows[n][condition]) if condition in rows[n] else None for n in names]
        ax.bar([i + j * width for i in range(len(names))], [0 if v is None else max(v, 0) for v in values], width,
               label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out episodes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="lara probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, nargs="+", help="data sources with actions (LIBERO HDF5, LeRobot)")
    source.add_argument("--synthetic", type=integer(8), metavar="N", help="N synthetic moving-square pairs instead of data")
    p.add_argument("--represent", nargs="+", default=["pixel_diff", "untrained_lam"],
                   help="lam:PATH, untrained_lam, pixel_diff, vision:SPEC (SPEC: dinov2, siglip, vit_mae built from "
                        "a small config, a JSON config file, or a local model folder)")
    p.add_argument("--frame-gap", type=integer(1), default=9, help="k: pairs (o_t, o_{t+k}) and chunks a_{t:t+k}")
    p.add_argument("--image-size", type=integer(8), default=64, help="frames are resized to this side")
    p.add_argument("--camera", default="agentview_rgb", help="camera of the frames")
    p.add_argument("--stride", type=integer(1), default=1, help="take every n-th pair (pairs are ordered by episode, t)")
    p.add_argument("--test-fraction", type=number(above=0, high=0.99), default=0.25, help="share of each task's episodes held out")
    p.add_argument("--mlp-steps", type=integer(0), default=600, help="MLP probe training steps (0: no MLP probe)")
    p.add_argument("--clusters", type=integer(1), default=8, help="action clusters of the code purity")
    p.add_argument("--distractors", action="store_true", help="probe again with action-correlated distractors")
    p.add_argument("--distractor-correlation", type=number(0, 1), default=0.7, help="rho of the distractor's motion")
    p.add_argument("--seed", type=integer(0, 2**31 - 1), default=0)
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write a bar plot (PNG) here")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --out / --plot")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_new([path for path in (args.out, args.plot) if path is not None], overwrite=args.overwrite, what="probe")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    if args.synthetic:
        data, image_size = synthetic_pairs(args.synthetic, args.seed), 16
    else:
        data, image_size = load_pairs(args.data, args.frame_gap, args.image_size, args.camera, args.stride), args.image_size
    distractors = DistractorConfig(correlation=args.distractor_correlation) if args.distractors else None
    report = run(data, args.represent, image_size, args.seed, args.test_fraction, args.mlp_steps, args.clusters,
                 distractors)
    report.update(settings=settings(args), wall_s=round(time.time() - start, 1),
                  load_average=round(os.getloadavg()[0], 2))
    pairs = report["pairs"]
    print(f"{pairs['train']} training / {pairs['test']} held-out pairs from {pairs['episodes']} episodes, "
          f"{len(data.tasks)} tasks; {report['wall_s']} s, load average {report['load_average']}")
    print(table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(report, indent=1))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    import sys

    from lara.errors import run_command

    raise SystemExit(run_command("lara probe", main, sys.argv[1:]))
