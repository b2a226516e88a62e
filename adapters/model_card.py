"""RUN/final/README.md: a Hugging Face model card for every exported run, and a row in it for every evaluation.

    write_card(final)              # the export (adapters/common.export_final), once RUN/final is complete
    add_evaluations(final, rows)   # `lara eval ... --policy checkpoint:RUN/final/vla` (lara.benchmarks.card_rows)

The card is made from the run's own records, so a run exported before cards existed gets one the first time it is
evaluated: RUN/final/recipe.json (recipe and settings), RUN/final/dataset_statistics.json (episodes, transitions),
RUN/data_split.json (a label-scarce split), RUN/metrics.jsonl (LAM health at the last logged step; RUN/lam/metrics.jsonl
for what the joint phase did not log). Its YAML metadata (library_name, tags, base_model, pipeline_tag) is what the
Hub indexes, and `huggingface_hub.ModelCard.load` reads it back. The evaluation table sits between two markers: rows
are appended and never removed, and a re-export of the same run (adapters/run_folder.py: its last steps retrained
exactly) keeps them. The card is written atomically (`lara.outputs.replacing`) under a lock on RUN/final, so two
evaluations that end at once both land; it is left out of RUN/final/manifest.json, since it changes with each
evaluation. Paths in it are those the records hold: as given, or relative to the project (`lara.outputs.recorded`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from lara.outputs import recorded, replacing

CARD = "README.md"
START, END = "<!-- lara:evaluations -->", "<!-- /lara:evaluations -->"
HEADER = ("| Date (UTC) | Benchmark | Suite | Tasks | Success | 95% interval (Wilson) | Notes | Command |\n"
          "|---|---|---|---|---|---|---|---|")
HEALTH = ("lam/code_usage", "lam/perplexity", "lam/z_std", "align/cos")
SUITE_FLAG = {"libero_spatial": "spatial", "libero_object": "object", "libero_goal": "goal", "libero_10": "10",
              "libero_90": "90"}


def run_final(vla: str | os.PathLike) -> Path | None:
    """RUN/final for the VLA folder `vla` of a training run's export (RUN/final/recipe.json beside it); None for any
    other folder (a checkpoint's vla/, a downloaded model), whose card is not ours to write."""
    final = Path(vla).parent
    return final if (final / "recipe.json").is_file() else None


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_logged(run: Path, names=HEALTH) -> dict[str, tuple[float, int, str]]:
    """name -> (value, step, file) at the last step each name was logged: RUN/metrics.jsonl, then RUN/lam's."""
    found: dict[str, tuple[float, int, str]] = {}
    for path in (run / "metrics.jsonl", run / "lam" / "metrics.jsonl"):
        if not path.is_file():
            continue
        latest: dict[str, tuple[float, int, str]] = {}
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                latest.update({name: (record[name], record.get("step"), recorded(path))
                               for name in names if isinstance(record.get(name), (int, float))})
        found = {**latest, **found}  # the joint phase's value first
    return found


SOURCE_DEFAULTS = {"format": None, "weight": 1.0, "labels": None, "labelled_per_task": None, "episodes": "all",
                   "split_seed": 0}  # lara.data.config.SourceSpec's


def _source(entry) -> str:
    """One data.paths entry: its path, and the options it was given other than the defaults."""
    if not isinstance(entry, dict):
        return f"`{entry}`"
    options = ", ".join(f"{k} {v}" for k, v in entry.items()
                        if k != "path" and (k not in SOURCE_DEFAULTS or v != SOURCE_DEFAULTS[k]))
    return f"`{entry.get('path')}`" + (f" ({options})" if options else "")


def _generation(recipe: dict) -> dict | None:
    """generation.json of the first data source made by `lara data generate` (it says the benchmark and tasks)."""
    for entry in recipe.get("data", {}).get("paths", []):
        path = Path(entry["path"] if isinstance(entry, dict) else entry)
        for folder in (path, path.parent):
            found = _json(folder / "generation.json")
            if isinstance(found, dict):
                return found
    return None


def metadata(recipe: dict) -> ModelCardData:
    model, data = recipe.get("model", {}), recipe.get("data", {})
    tags = ["lara", "robotics", "vision-language-action", recipe.get("recipe"), model.get("family"),
            "baseline" if recipe.get("baseline") else "latent-action-pretraining"
            if recipe.get("recipe") == "latent_pretrain" else "latent-action-alignment", data.get("dataset_name")]
    generated = _generation(recipe) or {}
    tags.append("simpler" if generated.get("bench") == "simpler" else "libero" if "suite" in generated else None)
    return ModelCardData(library_name="lara", pipeline_tag="robotics", base_model=_base_model(model.get("path")),
                         tags=list(dict.fromkeys(t for t in tags if t)))


def _base_model(path: str | None) -> str | None:
    """A Hub cache snapshot (.../models--ORG--NAME/snapshots/REV) as its repo id ORG/NAME, another path as recorded."""
    if not path:
        return None
    hub = re.search(r"models--([^/]+?)--([^/]+)", path)
    return f"{hub.group(1)}/{hub.group(2)}" if hub else path


def _lara_config(recipe: dict, final: Path) -> dict:
    """The LARA settings of the exported artifact (RUN/final/lara, or the LAM of latent_pretrain in RUN/final/lam):
    a LAM continued from a saved one (refine.lam_from, latent.lam_from) keeps its own; else the recipe's."""
    for artifact in ("lara", "lam"):
        found = _json(final / artifact / "lara_config.json")
        if isinstance(found, dict):
            return found
    return recipe.get("lara", {})


def _settings(recipe: dict, final: Path) -> list[tuple[str, str]]:
    model, train, lara = recipe.get("model", {}), recipe.get("train", {}), _lara_config(recipe, final)
    lam, align = lara.get("lam", {}), lara.get("align", {})
    lora = model.get("lora")
    rows = [("recipe", f"`{recipe.get('recipe')}`" + (" (baseline: LARA off)" if recipe.get("baseline") else "")),
            ("backbone", f"`{model.get('family')}`, {model.get('dtype')}"),
            ("started from", f"`{model['path']}`" if model.get("path") else
             f"a new model (`model.build` {json.dumps(model.get('build', {}))})"),
            ("fine-tuning", "frozen VLA" if model.get("freeze") else
             f"LoRA r {lora['r']}, alpha {lora['alpha']}, on {lora['target_modules']} (merged at export)" if lora
             else "full")]
    if not recipe.get("baseline") and recipe.get("recipe") != "latent_pretrain":  # LAPA aligns nothing
        rows += [("LARA weights", f"align {lara.get('align_weight')}, LAM {lara.get('lam_weight')}, "
                                  f"FDM {lara.get('fdm_weight')}"),
                 ("alignment", f"{align.get('loss')} loss, {align.get('projector')} projector, layer "
                               f"{align.get('layer') or '(the backbone default)'}, target "
                               f"{'detached' if align.get('detach_target') else 'not detached (bidirectional)'}")]
    if not recipe.get("baseline"):
        head = lam.get("action_horizon")
        rows.append(("LAM", f"{lam.get('latent_tokens')} x {lam.get('latent_dim')} latent, quantizer "
                            f"{lam.get('quantizer')} ({lam.get('codebook_size')} codes), {lam.get('input')} input, "
                            + (f"action head over {head} steps" if head else "no action head")))
    rows += [("steps", f"{train.get('steps')} (batch {train.get('batch_size')} x accumulation "
                       f"{train.get('grad_accum')} per process)"),
             ("optimiser", f"AdamW, lr {train.get('lr')}, {train.get('schedule')} schedule, warm-up "
                           f"{train.get('warmup_steps')}, EMA {train.get('ema_decay') or 'off'}, mixed precision "
                           f"{train.get('mixed_precision')}"),
             ("seed", str(train.get("seed")))]
    phases = {"pretrain": ("LAM-only steps", recipe.get("pretrain", {}).get("lam_steps")),
              "posttrain": ("LAM warm-up steps", recipe.get("posttrain", {}).get("lam_warmup_steps")),
              "refine_lam": ("LAM refined from", recipe.get("refine", {}).get("lam_from")),
              "latent_pretrain": ("LAM labelling the codes", recipe.get("latent", {}).get("lam_from") or
                                  f"trained here, {recipe.get('latent', {}).get('lam_steps')} steps")}
    if recipe.get("recipe") in phases and not recipe.get("baseline"):
        rows.append(phases[recipe["recipe"]])
    if recipe.get("recipe") in ("posttrain", "pretrain") and recipe.get("refine", {}).get("lam_from"):
        rows.append(("LAM continued from", f"`{recipe['refine']['lam_from']}`"))
    return rows


def _data(recipe: dict, final: Path) -> list[str]:
    data = recipe.get("data", {})
    lines = [f"- sources: {', '.join(_source(e) for e in data.get('paths', []))}",
             f"- camera `{data.get('camera')}`" + "".join(f", `{c}`" for c in data.get("extra_cameras", [])) +
             f", images {data.get('image_size') or 'as stored'}, frame gap {data.get('frame_gap')}, action chunk "
             f"{data.get('action_horizon')}, statistics under `{data.get('dataset_name')}`"]
    stats = (_json(final / "dataset_statistics.json") or {}).get(data.get("dataset_name"))
    if isinstance(stats, dict) and "num_trajectories" in stats:
        lines.append(f"- {stats['num_trajectories']} episodes with actions, {stats['num_transitions']} transitions "
                     "(`dataset_statistics.json`)")
    extra = {"action-free frames (pretrain.video_paths)": recipe.get("pretrain", {}).get("video_paths"),
             "action-free warm-up frames (posttrain.lam_warmup_paths)":
                 recipe.get("posttrain", {}).get("lam_warmup_paths")}
    lines += [f"- {what}: {', '.join(_source(e) for e in paths)}" for what, paths in extra.items() if paths]
    split = _json(final.parent / "data_split.json")
    if isinstance(split, dict):
        lines.append("- label-scarce split (`data_split.json` in the run folder, with every episode's id):")
        for role, sides in split.items():
            for side in sides:
                read = "action-free" if side.get("action_free") else "with actions"
                lines.append(f"  - {role}: {side.get('episodes')} side of `{side.get('path')}` "
                             f"({side.get('labelled_per_task')} labelled per task, split seed "
                             f"{side.get('split_seed')}): {side.get('count')} episodes, read {read}")
    return lines


def _health(recipe: dict, run: Path) -> list[str]:
    if recipe.get("baseline"):
        return ["None: a baseline run trains no LAM."]
    found = last_logged(run)
    if not found:
        return ["No LAM value was logged (no `metrics.jsonl` in the run folder)."]
    lines = ["| value | last logged | step | from |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {found[name][0]:.4g} | {found[name][1]} | `{found[name][2]}` |"
              for name in HEALTH if name in found]
    spread = found.get("lam/z_std")
    if spread is not None:
        from lara.model import COLLAPSED_SPREAD  # here: torch's import is most of a card update's time in `lara eval`

        alive = spread[0] >= COLLAPSED_SPREAD
        verdict = (f"above {COLLAPSED_SPREAD}: the LAM's latent varies across samples." if alive else
                   f"below {COLLAPSED_SPREAD}: the LAM's latent has collapsed (nearly the same for every sample), so "
                   "the alignment target taught the policy little.")
        lines += ["", f"`lam/z_std` {spread[0]:.3g} is {verdict}"]
    return lines


def _use(recipe: dict) -> list[str]:
    run = recipe.get("output_dir", "RUN")
    vla = f"{run}/final/vla"
    if recipe.get("recipe") == "latent_pretrain":
        return ["`vla/` predicts a LAM's latent-action codes, not robot actions: post-train it on demonstrations, "
                "then evaluate and serve that run (paths relative to the folder this run was trained from):", "",
                "```bash", f"lara train posttrain_token_vla model.path={vla} data.paths=[DEMONSTRATIONS] "
                f"output_dir={run}-posttrain", "```"]
    generated = _generation(recipe) or {}
    tasks = ",".join(str(t["task_id"]) for t in generated.get("tasks", []) if "task_id" in t)
    if generated.get("bench") == "simpler":
        envs = ",".join(t["env_id"] for t in generated.get("tasks", []) if "env_id" in t)
        evaluate = (f"lara eval simpler --policy checkpoint:{vla} --tasks {envs or 'carrot,spoon,stack,eggplant'} "
                    f"--episodes 24 --seeds 3 --out {run}/eval/simpler")
    else:
        suite = SUITE_FLAG.get(generated.get("suite"), "spatial,object,goal,10")
        evaluate = (f"lara eval libero --policy checkpoint:{vla} --suite {suite}"
                    + (f" --tasks {tasks}" if tasks else "") + f" --trials 50 --out {run}/eval/libero")
    return ["Paths are relative to the folder the run was trained from.", "", "```python",
            "from lara.policy import load_policy", "",
            f'policy = load_policy("checkpoint:{vla}")  # LARA detached: the VLA alone',
            "policy.reset(instruction)", "chunk = policy.act(obs)  # obs: lara.policy's keys -> float32 [T, 7]", "```",
            "", "Evaluate (each evaluation adds a row below; trials on init states the training data started from are "
            "refused, `--allow-train-init-states` runs them and says so):", "", "```bash", evaluate, "```", "",
            "Serve over openpi's websocket protocol (`lara eval --policy ws://127.0.0.1:8000`, a robot's client):", "",
            "```bash", f"lara serve --checkpoint {vla} --port 8000", "```"]


def card_text(final: Path, rows: list[str] = ()) -> str:
    """The card of RUN/final from the run's records, its evaluation table holding `rows`."""
    recipe = _json(final / "recipe.json") or {}
    run = recipe.get("output_dir") or recorded(final.parent)
    family, what = recipe.get("model", {}).get("family"), recipe.get("recipe")
    lara = ("without LARA (baseline)" if recipe.get("baseline") else "on a LAM's latent-action codes (LAPA)"
            if what == "latent_pretrain" else "with LARA's latent-action alignment")
    files = ", ".join(f"`{p.name}{'/' if p.is_dir() else ''}`" for p in sorted(final.iterdir())
                      if not p.name.startswith(".") and p.name != CARD)
    body = [f"# {Path(run).name}: `{family}` VLA, `{what}` {lara}", "",
            f"A VLA trained by LARA (`lara train`, recipe `{what}`), exported to `{run}/final`: {files}; the full "
            "config is `recipe.json`." + (" `vla/` is the policy by itself (save_pretrained, with its action "
                                          "statistics)." if what != "latent_pretrain" else ""), "",
            "## Training", "", "| setting | value |", "|---|---|",
            *[f"| {name} | {value} |" for name, value in _settings(recipe, final)], "",
            "## Data", "", *_data(recipe, final), "",
            "## LAM health at the end of training", "", *_health(recipe, final.parent), "",
            "## Use", "", *_use({**recipe, "output_dir": run}), "",
            "## Evaluation", "",
            f"Every `lara eval libero|simpler --policy checkpoint:{run}/final/vla` adds its result here; earlier rows "
            "are kept.", "", START, HEADER, *rows, END, ""]
    return f"---\n{metadata(recipe).to_yaml()}\n---\n\n" + "\n".join(body)


def _rows(text: str) -> list[str]:
    """The evaluation rows of a card's text (none when it has no table of ours)."""
    if START not in text or END not in text:
        return []
    inside = text.split(START, 1)[1].split(END, 1)[0]
    return [line for line in inside.splitlines() if line.startswith("|")][2:]  # below the header's two lines


def _save(final: Path, text: str) -> Path:
    path = final / CARD
    with replacing(path) as staging:
        ModelCard(text).save(staging)
    return path


@contextlib.contextmanager
def _locked(final: Path) -> Iterator[None]:
    """An exclusive lock on the RUN/final folder itself: one card update at a time, no lock file left behind (on a
    filesystem without locks, none: the write is atomic either way)."""
    fd = os.open(final, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_card(final: str | os.PathLike) -> Path:
    """RUN/final/README.md from the run's records, keeping the evaluation rows of a card already there."""
    final = Path(final)
    with _locked(final):
        earlier = (final / CARD).read_text() if (final / CARD).is_file() else ""
        return _save(final, card_text(final, _rows(earlier)))


def cell(text) -> str:
    """A value as one markdown table cell (pipes escaped, one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def evaluation_row(date: str, benchmark: str, suite: str, tasks: str, successes: int, trials: int,
                   interval: tuple[float, float], notes: str, command: str) -> str:
    low, high = interval
    values = [date, benchmark, suite, tasks, f"{successes}/{trials} ({100 * successes / trials:.1f}%)",
              f"{100 * low:.1f}-{100 * high:.1f}%", notes or "-", f"`{command}`"]
    return "| " + " | ".join(cell(v) for v in values) + " |"


def add_evaluations(final: str | os.PathLike, rows: list[str]) -> Path:
    """Append `rows` (`evaluation_row`s) to RUN/final/README.md's evaluation table; a run without a card (exported
    before cards existed) gets one made from its records first, and a card whose table was edited away gets a new
    one at its end (the rest of the card as it is)."""
    final = Path(final)
    with _locked(final):
        text = (final / CARD).read_text() if (final / CARD).is_file() else card_text(final)
        if START in text and END in text:
            head, tail = text.split(END, 1)  # the table `_rows` reads
            text = head.rstrip("\n") + "\n" + "".join(row + "\n" for row in rows) + END + tail
        else:
            text = text.rstrip("\n") + "\n\n## Evaluation\n\n" + "\n".join([START, HEADER, *rows, END]) + "\n"
        return _save(final, text)
