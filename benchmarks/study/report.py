"""A study's outputs from its cells: study.json (cells, per-variant success, differences), study.md, study.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lara.model import COLLAPSED_SPREAD
from lara.outputs import save_figure, write_text

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


def summarise(command: str, settings: dict, cells: list[dict], variants: list[str],
              comparisons: list[str] = ()) -> dict:
    """The study.json object: every finished cell, each variant's pooled success with a prediction interval for a
    new seed, each difference to the baseline and each named comparison "A - B" (seed-level figures, the bootstrap
    under `bootstrap`), and both again per task (`per_task`: a study's tasks can move in opposite directions under
    a pooled figure)."""
    summary = {"command": command, "settings": settings, "cells": cells, "variants": {}, "differences": {}}
    episodes = {name: episodes_of(cells, name) for name in {"baseline", *variants}}
    for name in variants:
        own = [c for c in cells if c["variant"] == name]
        if not own:
            continue
        success = stats.success_summary(episodes[name])
        per_seed = {str(seed): entry for seed, entry in success.pop("per_seed").items()}
        summary["variants"][name] = {"seeds": sorted(c["seed"] for c in own), "success": success, "per_seed": per_seed,
                                     "prediction95": stats.prediction_interval([e["rate"] for e in per_seed.values()]),
                                     "per_task": {task: _success(e) for task, e in by_task(episodes[name]).items()},
                                     **{key: _mean([c[key] for c in own])
                                        for key in ("code_usage", "perplexity", "align_cos", "z_std", "align_constant")}}
    pairs = [(name, "baseline") for name in variants if name != "baseline"]
    pairs += [tuple(part.strip() for part in c.split(" - ")) for c in comparisons]
    for name, other in pairs:
        if name not in summary["variants"] or other not in summary["variants"]:
            continue
        if not {c["seed"] for c in cells if c["variant"] == name} & {c["seed"] for c in cells if c["variant"] == other}:
            continue  # no seed finished in both yet
        mine, theirs = episodes[name], episodes[other]
        difference = stats.compare(mine, theirs)
        theirs_by_task = by_task(theirs)
        difference["per_task"] = {task: stats.compare(e, theirs_by_task[task])
                                  for task, e in by_task(mine).items() if task in theirs_by_task}
        summary["differences"][name if other == "baseline" else f"{name} - {other}"] = difference
    return summary


def _load_range(cells: list[dict]) -> str:
    """min-max of the 1-minute load averages recorded at the start and end of every cell's phases."""
    loads = [x for c in cells for pair in (c.get("load") or {}).values() if pair for x in pair]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "not recorded"


def _machines(cells: list[dict]) -> list[str]:
    """Which CPUs the cells trained on (cells.machine), when any cell recorded it: torch's CPU kernels round
    differently on each kind, so a seed's numbers depend on it."""
    on: dict[str, list[str]] = {}
    for c in cells:
        m = ((c.get("source") or {}).get("train") or {}).get("machine")
        on.setdefault(f"{m['cpu']} ({m['capability']})" if m else "not recorded",
                      []).append(f"{c['variant']}/seed{c['seed']}")
    if not on or set(on) == {"not recorded"}:
        return []
    if len(on) == 1:
        return [f"Every cell trained on {next(iter(on))}.", ""]
    return ["Machines the cells trained on (torch's CPU kernels round differently on each): "
            + "; ".join(f"{name}: {', '.join(names)}" for name, names in on.items()) + ".", ""]


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _interval(ci: list[float] | None, signed: bool = False) -> str:
    if ci is None:
        return "[-]"  # one seed: no spread to estimate
    low, high = ci
    return f"[{_points(low)}, {_points(high)}]" if signed else f"[{100 * low:.1f}, {100 * high:.1f}]"


def _versus(name: str) -> str:
    """'lara' -> 'lara - baseline'; a named comparison 'A - B' stays as it is."""
    return name if " - " in name else f"{name} - baseline"


def difference_sentence(name: str, diff: dict) -> str:
    """One plain sentence: the seed-level difference, its t-interval and sign-flip p, and what that allows to say."""
    seeds = len(diff["paired_seeds"])
    head = (f"{_versus(name)}: {_points(diff['mean'])} points (mean over {_count(seeds, 'paired seed')}), "
            f"95 % t-interval {_interval(diff['ci95'], signed=True)}, sign-flip p = "
            f"{diff['p_signflip']:.3g}")
    if diff["ci95"] is None:
        return head + "; one seed: no interval, nothing can be said at the level of the training seed."
    if not diff["excludes_zero"]:
        return head + "; the interval includes 0: at the level of the training seed this study cannot tell them apart."
    direction = "higher" if diff["mean"] > 0 else "lower"
    mine, other = _versus(name).split(" - ")
    other = "the baseline" if other == "baseline" else other
    return head + f"; the interval excludes 0: {mine}'s success is {direction} than {other}'s in this study."


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
    """The success of every variant on each task, and its seed-level difference to the baseline on that task with
    the discordant episodes (solved by only one of the two)."""
    lines = ["| task | variant | success | % | 95 % CI (Wilson) | vs baseline, points (95 % t-interval over seeds) "
             "| sign-flip p | solved only by the variant / only by the baseline |", "|---|---|---|---|---|---|---|---|"]
    tasks = sorted({task for v in summary["variants"].values() for task in v.get("per_task", {})}, key=int)
    for task in tasks:
        for name, v in summary["variants"].items():
            success = v.get("per_task", {}).get(task)
            if success is None:
                continue
            diff = summary["differences"].get(name, {}).get("per_task", {}).get(task)
            versus = f"{_points(diff['mean'])} {_interval(diff['ci95'], signed=True)}" if diff else "-"
            p = f"{diff['p_signflip']:.3g}" if diff else "-"
            discordant = f"{diff['only_variant']} / {diff['only_baseline']}" if diff else "-"
            lines.append(f"| {task} | {name} | {success['k']}/{success['n']} | {100 * success['mean']:.1f} | "
                         f"{_interval(success['ci95'])} | {versus} | {p} | {discordant} |")
    return lines


def per_seed_table(summary: dict) -> list[str]:
    """Every seed's success in every variant (k/n), the seeds as rows: the figures the seed-level statistics use."""
    names = list(summary["variants"])
    seeds = sorted({int(seed) for v in summary["variants"].values() for seed in v["per_seed"]})
    lines = ["| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for seed in seeds:
        row = [summary["variants"][n]["per_seed"].get(str(seed)) for n in names]
        lines.append(f"| {seed} | " + " | ".join(f"{e['k']}/{e['n']}" if e else "-" for e in row) + " |")
    return lines


def differences_table(summary: dict) -> list[str]:
    """Each comparison at the level of the training seed: every d_s, their mean, t-interval and sign-flip p."""
    lines = ["| comparison | seeds | per-seed differences, points | mean, points | 95 % t-interval (S - 1 df) "
             "| sign-flip p |", "|---|---|---|---|---|---|"]
    for name, d in summary["differences"].items():
        per_seed = ", ".join(f"{_points(v)} ({s})" for s, v in d["per_seed"].items())
        lines.append(f"| {_versus(name)} | {len(d['paired_seeds'])} | {per_seed} | {_points(d['mean'])} | "
                     f"{_interval(d['ci95'], signed=True)} | {d['p_signflip']:.3g} |")
    return lines


def bootstrap_lines(summary: dict) -> list[str]:
    """The hierarchical bootstrap's interval of each comparison: a secondary figure, labelled so."""
    if not summary["differences"]:
        return []
    lines = ["Secondary figure, not the study's result: the paired hierarchical bootstrap "
             f"({stats.RESAMPLES} resamples, RNG seed {stats.BOOTSTRAP_SEED}; seeds resampled with replacement, then "
             "each drawn seed's episodes). With few seeds it is too narrow (simulated null studies with 3 seeds: "
             "15-18 % false positives at a nominal 5 %).", ""]
    lines += [f"- {_versus(name)}: {_interval(d['bootstrap']['ci95'], signed=True)}"
              for name, d in summary["differences"].items()]
    return lines


def _report_only_lines(report: dict | None) -> list[str]:
    """What a --report-only report says of itself: the code that wrote it and the cells it leaves out."""
    if not report:
        return []
    left = ", ".join(report["unfinished"]) or "none"
    if report.get("rewritten_from_cells_of"):
        return [f"Statistics recomputed with --rewrite-report by commit {report.get('commit') or 'unknown'} from the "
                f"per-episode records of the cells in {report['rewritten_from_cells_of']}; cells not finished when "
                f"it was written: {left}.", ""]
    return [f"Written with --report-only by commit {report.get('commit') or 'unknown'} from the cells finished so far; "
            f"not finished yet: {left}.", ""]


def markdown(summary: dict) -> str:
    """study.md: the command first, then the seed-level differences, the arms, the seeds, the tasks, and the
    bootstrap last as a secondary figure."""
    s = summary["settings"]
    lines = ["# Study", "", "```", summary["command"], "```", "",
             f"Preset `{s['preset']}` trained on {', '.join(map(str, s['data']))} with seeds "
             f"{', '.join(map(str, s['seeds']))}; evaluated on LIBERO {s['suite']} tasks "
             f"{', '.join(map(str, s['tasks']))} with {_count(s['trials'], 'trial')} per task (trial i from init "
             "state i, the same in every cell).", "",
             f"Code: commit {(s.get('source') or {}).get('commit') or 'unknown'}"
             f"{' with uncommitted changes' if (s.get('source') or {}).get('dirty') else ''}; "
             f"load average (1 min) while cells ran: {_load_range(summary['cells'])}.", "",
             *_machines(summary["cells"]),
             *_report_only_lines(s.get("report")),
             *([f"Decision rule (fixed in the study file before its first cell ran): {s['decision_rule']}", ""]
               if s.get("decision_rule") else []),
             "## Differences, at the level of the training seed", "",
             *[f"- {difference_sentence(n, d)}" for n, d in summary["differences"].items()],
             *[f"- {sentence}" for sentence in collapse_sentences(summary)], "",
             *differences_table(summary), "",
             "## Arms", "",
             "| variant | seeds | success | % | 95 % CI (Wilson, pooled episodes) | a new seed, 95 % prediction "
             "| code usage | align cos | z spread | 1 − cos of the mean latent |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in summary["variants"].items():
        success = v["success"]
        lines.append(f"| {name} | {len(v['seeds'])} | {success['k']}/{success['n']} | {100 * success['mean']:.1f} | "
                     f"{_interval(success['ci95'])} | {_interval(v.get('prediction95'))} | "
                     f"{_number(v['code_usage'])} | {_number(v['align_cos'])} | {_number(v['z_std'])} | "
                     f"{_number(v['align_constant'])} |")
    lines += ["", *per_seed_table(summary), "", *per_task_table(summary), "",
              "The primary figure of a comparison is at the level of the training seed (DESIGN.md §8): per seed, the "
              "difference of the two arms' success over the same (task, trial) episodes; the mean of those, a "
              "t-interval with seeds - 1 degrees of freedom and an exact sign-flip p-value. The Wilson interval "
              "pools episodes and says nothing about a new training seed: the prediction interval (mean ± t · sd · "
              "sqrt(1 + 1/S) of the seeds' rates) does. Code usage (the fraction of the codebook a "
              "training batch used), align cos, z spread (the latent's std across a batch relative to its RMS) and "
              "1 − cos of the mean latent (what a prediction ignoring the sample would reach: an alignment loss "
              "near it learned nothing beyond the mean) are the last logged values of training, averaged over "
              "seeds.", "", *bootstrap_lines(summary), ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """study.png: left, every seed's success per variant (dots) with the seeds' mean and its prediction interval
    for a new seed; right, every seed's difference per comparison with their mean and 95 % t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, diffs = list(summary["variants"]), summary["differences"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(4.0, 1.1 * len(names) + 2) + max(3.0, 1.3 * len(diffs) + 1.5),
                                                     3.8), gridspec_kw={"width_ratios": [max(len(names), 2),
                                                                                         max(len(diffs), 2)]})
    for i, name in enumerate(names):
        v = summary["variants"][name]
        rates = [100 * entry["rate"] for entry in v["per_seed"].values()]
        offsets = np.linspace(-0.18, 0.18, len(rates)) if len(rates) > 1 else [0.0]
        left.scatter(i + np.asarray(offsets), rates, color="tab:blue", s=16, alpha=0.8,
                     label="one training seed" if i == 0 else None)
        band = v.get("prediction95")
        if band:
            left.vlines(i + 0.32, 100 * max(band[0], 0.0), 100 * min(band[1], 1.0), color="gray", lw=2,
                        label="a new seed, 95 % prediction" if i == 0 else None)
        left.plot([i - 0.25, i + 0.25], [np.mean(rates)] * 2, color="black", lw=2,
                  label="mean over seeds" if i == 0 else None)
    left.set_xticks(range(len(names)), names, fontsize=8)
    left.set_xlim(-0.6, len(names) - 0.4)
    left.set_ylim(-3, 103)
    left.set_ylabel("success rate (%)")
    left.set_title(f"LIBERO {summary['settings']['suite']}: success per seed", fontsize=10)
    left.legend(loc="lower left", fontsize=7)
    for i, (name, d) in enumerate(diffs.items()):
        values = [100 * v for v in d["per_seed"].values()]
        offsets = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else [0.0]
        right.scatter(i + np.asarray(offsets), values, color="tab:orange", s=16, alpha=0.8,
                      label="one seed's difference" if i == 0 else None)
        ci = d["ci95"] or [d["mean"], d["mean"]]
        right.errorbar(i + 0.3, 100 * d["mean"], yerr=[[100 * (d["mean"] - ci[0])], [100 * (ci[1] - d["mean"])]],
                       fmt="s", color="black", capsize=5, markersize=5, label="mean, 95 % t-interval" if i == 0 else None)
    right.axhline(0, color="gray", lw=0.8)
    right.set_xticks(range(len(diffs)), [_versus(n).replace(" - ", "\n- ") for n in diffs], fontsize=7)
    right.set_xlim(-0.6, max(len(diffs), 1) - 0.4)
    right.set_ylabel("difference, points")
    right.set_title("paired by seed", fontsize=10)
    if diffs:
        right.legend(loc="best", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def write(summary: dict, out: Path, name: str = "study") -> None:
    """OUT/NAME.json, NAME.md and NAME.png (a study folder's study.*, or a committed report's own name)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"{name}.json", json.dumps(summary, indent=1))  # each whole or not at all
    write_text(out / f"{name}.md", markdown(summary))
    plot(summary, out / f"{name}.png")
