"""A study's outputs from its cells: study.json (cells, per-variant success, differences), study.md, study.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lara.model import COLLAPSED_SPREAD

from . import stats


def episodes_of(cells: list[dict], variant: str) -> dict[tuple, bool]:
    """{(seed, task, trial): success} over a variant's cells."""
    return {(c["seed"], task, trial): bool(success)
            for c in cells if c["variant"] == variant for task, trial, success in c["episodes"]}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def by_task(episodes: dict[tuple, bool]) -> dict[str, dict[tuple, bool]]:
    """{task (as a string): that task's {(seed, task, trial): success}}, tasks in order."""
    return {str(task): {key: v for key, v in episodes.items() if key[1] == task}
            for task in sorted({key[1] for key in episodes})}


def _success(episodes: dict[tuple, bool]) -> dict:
    success = stats.success_summary(episodes)
    success.pop("per_seed")
    return success


def summarise(command: str, settings: dict, cells: list[dict], variants: list[str]) -> dict:
    """The study.json object: every finished cell, each variant's pooled success, each difference to the baseline,
    and both again per task (`per_task`: a study's tasks can move in opposite directions under a pooled figure)."""
    summary = {"command": command, "settings": settings, "cells": cells, "variants": {}, "differences": {}}
    episodes = {name: episodes_of(cells, name) for name in {"baseline", *variants}}
    for name in variants:
        own = [c for c in cells if c["variant"] == name]
        if not own:
            continue
        success = stats.success_summary(episodes[name])
        per_seed = {str(seed): entry for seed, entry in success.pop("per_seed").items()}
        summary["variants"][name] = {"seeds": sorted(c["seed"] for c in own), "success": success, "per_seed": per_seed,
                                     "per_task": {task: _success(e) for task, e in by_task(episodes[name]).items()},
                                     **{key: _mean([c[key] for c in own])
                                        for key in ("code_usage", "perplexity", "align_cos", "z_std", "align_constant")}}
    baseline = episodes["baseline"]
    baseline_tasks = by_task(baseline)
    for name in variants:
        if name != "baseline" and name in summary["variants"] and baseline:
            difference = stats.paired_difference(episodes[name], baseline)
            difference["per_task"] = {task: stats.paired_difference(mine, baseline_tasks[task])
                                      for task, mine in by_task(episodes[name]).items() if task in baseline_tasks}
            summary["differences"][name] = difference
    return summary


def _load_range(cells: list[dict]) -> str:
    """min-max of the 1-minute load averages recorded at the start and end of every cell's phases."""
    loads = [x for c in cells for pair in (c.get("load") or {}).values() if pair for x in pair]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "not recorded"


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _interval(ci: list[float], signed: bool = False) -> str:
    low, high = ci
    return f"[{_points(low)}, {_points(high)}]" if signed else f"[{100 * low:.1f}, {100 * high:.1f}]"


def difference_sentence(name: str, diff: dict) -> str:
    """One plain sentence: the paired difference, its interval, and whether the interval excludes 0."""
    episodes, seeds = diff["paired_episodes"], len(diff["paired_seeds"])
    head = (f"{name} - baseline: {_points(diff['mean'])} points over {_count(episodes, 'paired episode')} "
            f"from {_count(seeds, 'seed')}, 95 % CI {_interval(diff['ci95'], signed=True)}")
    if not diff["excludes_zero"]:
        return head + "; the interval includes 0: this study cannot tell the two apart."
    direction = "higher" if diff["mean"] > 0 else "lower"
    return head + f"; the interval excludes 0: {name}'s success is {direction} than the baseline's in this study."


def collapse_sentences(summary: dict) -> list[str]:
    """One sentence per variant whose LAM ended training collapsed in some seed (z spread below COLLAPSED_SPREAD):
    its LARA loss aligned the policy to a near-constant target, so that arm did not test alignment to a live LAM."""
    sentences = []
    for name in summary["variants"]:
        low = [c for c in summary["cells"]
               if c["variant"] == name and c.get("z_std") is not None and c["z_std"] < COLLAPSED_SPREAD]
        if low:
            spreads = ", ".join(f"{c['z_std']:.2g} (seed {c['seed']})" for c in sorted(low, key=lambda c: c["seed"]))
            sentences.append(f"{name}: the LAM's latent barely varied at the end of training, z spread {spreads} "
                             f"< {COLLAPSED_SPREAD}: a collapsed LAM, whose alignment target was nearly constant; "
                             "these cells do not test alignment to a live LAM.")
    return sentences


def per_task_table(summary: dict) -> list[str]:
    """The success of every variant on each task, and its paired difference to the baseline on that task with the
    discordant episodes (solved by only one of the two)."""
    lines = ["| task | variant | success | % | 95 % CI (Wilson) | vs baseline, points (95 % CI) "
             "| solved only by the variant / only by the baseline |", "|---|---|---|---|---|---|---|"]
    tasks = sorted({task for v in summary["variants"].values() for task in v.get("per_task", {})}, key=int)
    for task in tasks:
        for name, v in summary["variants"].items():
            success = v.get("per_task", {}).get(task)
            if success is None:
                continue
            diff = summary["differences"].get(name, {}).get("per_task", {}).get(task)
            versus = f"{_points(diff['mean'])} {_interval(diff['ci95'], signed=True)}" if diff else "-"
            discordant = f"{diff['only_variant']} / {diff['only_baseline']}" if diff else "-"
            lines.append(f"| {task} | {name} | {success['k']}/{success['n']} | {100 * success['mean']:.1f} | "
                         f"{_interval(success['ci95'])} | {versus} | {discordant} |")
    return lines


def _report_only_lines(report: dict | None) -> list[str]:
    """What a --report-only report says of itself: the code that wrote it and the cells it leaves out."""
    if not report:
        return []
    left = ", ".join(report["unfinished"]) or "none"
    return [f"Written with --report-only by commit {report.get('commit') or 'unknown'} from the cells finished so far; "
            f"not finished yet: {left}.", ""]


def markdown(summary: dict) -> str:
    """study.md: the command first, then the table and one sentence per difference."""
    s = summary["settings"]
    lines = ["# Study", "", "```", summary["command"], "```", "",
             f"Preset `{s['preset']}` trained on {', '.join(map(str, s['data']))} with seeds "
             f"{', '.join(map(str, s['seeds']))}; evaluated on LIBERO {s['suite']} tasks "
             f"{', '.join(map(str, s['tasks']))} with {_count(s['trials'], 'trial')} per task (trial i from init "
             "state i, the same in every cell).", "",
             f"Code: commit {(s.get('source') or {}).get('commit') or 'unknown'}"
             f"{' with uncommitted changes' if (s.get('source') or {}).get('dirty') else ''}; "
             f"load average (1 min) while cells ran: {_load_range(summary['cells'])}.", "",
             *_report_only_lines(s.get("report")),
             "| variant | seeds | success | % | 95 % CI (Wilson) | vs baseline, points (95 % CI) | code usage "
             "| align cos | z spread | 1 − cos of the mean latent |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in summary["variants"].items():
        success, diff = v["success"], summary["differences"].get(name)
        versus = f"{_points(diff['mean'])} {_interval(diff['ci95'], signed=True)}" if diff else "-"
        lines.append(f"| {name} | {len(v['seeds'])} | {success['k']}/{success['n']} | {100 * success['mean']:.1f} | "
                     f"{_interval(success['ci95'])} | {versus} | {_number(v['code_usage'])} | "
                     f"{_number(v['align_cos'])} | {_number(v['z_std'])} | {_number(v['align_constant'])} |")
    lines += ["", *[f"- {difference_sentence(n, d)}" for n, d in summary["differences"].items()],
              *[f"- {sentence}" for sentence in collapse_sentences(summary)], "",
              *per_task_table(summary), "",
              f"Differences are paired by (seed, task, trial); their interval is a hierarchical bootstrap "
              f"({stats.RESAMPLES} resamples, RNG seed {stats.BOOTSTRAP_SEED}): training seeds resampled with "
              "replacement, then each drawn seed's (task, trial) episodes resampled with replacement; percentile "
              "interval (conservative: episode noise enters at both stages). Code usage (the fraction of the codebook a "
              "training batch used), align cos, z spread (the latent's std across a batch relative to its RMS) and "
              "1 − cos of the mean latent (what a prediction ignoring the sample would reach: an alignment loss "
              "near it learned nothing beyond the mean) are the last logged values of training, averaged over "
              "seeds.", ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """study.png: pooled success per variant with its Wilson interval, and each seed's rate as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["variants"])
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.6))
    for i, name in enumerate(names):
        v = summary["variants"][name]
        mean, (low, high) = v["success"]["mean"], v["success"]["ci95"]
        ax.errorbar(i, 100 * mean, yerr=[[100 * (mean - low)], [100 * (high - mean)]], fmt="s", color="black",
                    capsize=6, markersize=7, label="pooled, 95 % CI" if i == 0 else None)
        rates = [entry["rate"] for entry in v["per_seed"].values()]
        offsets = np.linspace(-0.15, 0.15, len(rates)) if len(rates) > 1 else [0.0]
        ax.scatter(i + np.asarray(offsets) + 0.25, [100 * r for r in rates], color="tab:blue", s=18,
                   label="per seed" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.2)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"LIBERO {summary['settings']['suite']}: success per variant", fontsize=10)
    ax.legend(loc="best", fontsize=8)  # away from the points
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(summary, indent=1))
    (out / "study.md").write_text(markdown(summary))
    plot(summary, out / "study.png")
