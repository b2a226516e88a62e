"""The label-scarce study (configs/label_scarce_libero_object.yaml): its arms as `lara study` plans them, and a
miniature of every arm that reads the action-free side, on files whose action-free episodes carry NaN actions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lara.adapters import cli as train_cli
from lara.adapters.metrics import read_metrics
from lara.benchmarks.study import cli
from lara.benchmarks.study.cells import plan_cells
from lara.benchmarks.study.config import load_study
from lara.data import EpisodeDataset
from lara.errors import InputError
from lara.outputs import recorded

from scarce_files import poison, write_tasks

STUDY_FILE = Path(__file__).parents[2] / "benchmarks" / "study" / "configs" / "label_scarce_libero_object.yaml"
SHIPPED_DATA = "data/ref_object64"
# shrinks every stage of every arm (appended last, so it wins over the study's and the stages' own settings)
TINY = ["train.steps=2", "posttrain.lam_warmup_steps=2", "pretrain.lam_steps=2", "latent.lam_steps=2",
        "train.batch_size=4", "train.log_every=1", "train.checkpoint_every=2", "train.warmup_steps=1",
        "train.wandb.mode=disabled", "train.progress=false", "data.image_size=32", "lara.lam.image_size=32",
        "lara.lam.patch_size=16", "lara.lam.width=32", "lara.lam.idm_layers=1", "lara.lam.fdm_layers=1",
        # the reference TokenVLA's options, small: L1 chunks, the wrist camera and the robot state token
        "model.build={width: 32, layers: 1, image_size: 32, chunk_size: 4, action_head: l1, proprio_dim: 8}"]


def shipped_study(data: Path, out: Path, **fields) -> dict:
    """The shipped study file's fields with its data folder (in every entry and override) replaced by `data`."""
    raw = cli.study_fields(cli.build_parser().parse_args([str(STUDY_FILE)]))
    text = json.dumps({**raw, "out": str(out), **fields}).replace(SHIPPED_DATA, str(data))
    return json.loads(text)


def test_the_arms_read_the_sides_of_the_split_the_issue_names(tmp_path):
    demos = write_tasks(tmp_path / "demos", episodes=6, size=16)
    cells = {c.variant: c for c in plan_cells(load_study(shipped_study(demos, tmp_path / "study"))) if c.seed == 2}
    assert set(cells) == {"baseline", "lara", "lara_pre", "lapa", "oracle"}
    labelled = f"data.paths=[{{path: {demos}, labelled_per_task: 5, episodes: labelled}}]"
    unlabelled = f"[{{path: {demos}, labelled_per_task: 5, episodes: unlabelled}}]"
    warmup = f"posttrain.lam_warmup_paths={unlabelled}"
    for arm in ("baseline", "lara", "lara_pre", "lapa"):  # post-training on the 10 labelled demonstrations
        assert cells[arm].train_args[-2:] == [labelled, "train.seed=2"] and warmup in cells[arm].train_args
    assert "baseline=true" in cells["baseline"].train_args and "baseline=true" not in cells["lara"].train_args
    pre = cells["lara_pre"]
    assert {"recipe=pretrain", f"pretrain.video_paths={unlabelled}", labelled} <= set(pre.first_args)
    assert f"refine.lam_from={pre.folder / 'first' / 'final' / 'lara'}" in pre.train_args  # continue_lam
    assert f"model.path={pre.folder / 'first' / 'final' / 'vla'}" in pre.train_args
    lapa = cells["lapa"]
    assert lapa.first_args[:2] == ["train", "latent_pretrain_token_vla"]
    assert f"data.paths={unlabelled}" in lapa.first_args
    assert labelled not in lapa.first_args and "baseline=true" in lapa.train_args
    assert not any(a.startswith("refine.lam_from") for a in lapa.train_args)
    oracle = cells["oracle"]
    assert f"data.paths=[{demos}]" in oracle.train_args and labelled not in oracle.train_args
    assert {c.eval_args[c.eval_args.index("--trials") + 1] for c in cells.values()} == {"25"}


def test_the_follow_up_reuses_the_studys_baseline_and_lara_cells_and_reruns_lara_pre_as_it_was(tmp_path):
    """label_scarce_lara_pre_libero_object.yaml reruns lara_pre on the newer pretrain code and takes its baseline and
    lara cells from the label-scarce study: `lara study` skips a copied cell only when its recorded arguments equal
    the planned ones, so every argument must match (lara_pre's up to the study folder its paths name)."""
    follow_up = STUDY_FILE.parent / "label_scarce_lara_pre_libero_object.yaml"
    assert follow_up.read_text().startswith(f"# lara study benchmarks/study/configs/{follow_up.name}")
    main = {c.name: c for c in plan_cells(load_study(shipped_study(tmp_path, tmp_path / "study")))}
    raw = cli.study_fields(cli.build_parser().parse_args([str(follow_up)]))
    text = json.dumps({**raw, "out": str(tmp_path / "again")}).replace(SHIPPED_DATA, str(tmp_path))
    again = {c.name: c for c in plan_cells(load_study(json.loads(text)))}
    assert set(again) == {f"{arm}/seed{s}" for arm in ("baseline", "lara", "lara_pre") for s in (0, 1, 2)}
    moved = lambda args: [a.replace(str(tmp_path / "again"), str(tmp_path / "study")) for a in args]  # noqa: E731
    for name, cell in again.items():
        assert (cell.train_args if name.startswith(("baseline", "lara/")) else moved(cell.train_args)) == \
            main[name].train_args, name
        assert cell.first_args == main[name].first_args and cell.eval_args == main[name].eval_args, name


def test_continue_lam_owns_refine_lam_from(tmp_path):
    raw = shipped_study(tmp_path, tmp_path / "study")
    raw["variants"]["lara_pre"]["overrides"] = ["refine.lam_from=elsewhere"]
    with pytest.raises(InputError, match="'refine.lam_from' of a variant with continue_lam is its first stage's LAM"):
        load_study(raw)


def finite_losses(run: Path) -> list[dict]:
    """Every record of every metrics.jsonl under a run (its phases too), after checking each value is finite."""
    records = [r for path in sorted(run.rglob("metrics.jsonl")) for r in read_metrics(path)]
    assert records, f"{run} logged nothing"
    bad = [(k, v) for r in records for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]
    assert not bad, f"{run}: {bad[:3]}"
    return records


def test_no_action_of_an_action_free_episode_reaches_any_arm(tmp_path):
    """The issue's test: the action-free episodes carry NaN actions (and states), and every arm that reads them
    (lara: LAM warm-up; lara_pre: its LAM phase and video batches; lapa: its whole first stage) and the baseline
    train with finite losses. A NaN action reaching a statistic, a sample or lam_actions would be refused by the
    data core (non-finite actions) or turn a loss NaN. The oracle reads every action by design: not run here."""
    demos = write_tasks(tmp_path / "demos", episodes=6, size=32)
    side = dict(path=str(demos), labelled_per_task=5, split_seed=0, episodes="unlabelled")
    action_free = EpisodeDataset(paths=[side]).split[0]["ids"]
    poison(demos, action_free)
    study = load_study(shipped_study(demos, tmp_path / "study", seeds=[0]))
    cells = [c for c in plan_cells(study) if c.variant != "oracle"]
    for cell in cells:
        for stage, args in (("first", cell.first_args), ("run", cell.train_args)):
            if args is not None:
                assert train_cli.main([*args[1:], *TINY, f"output_dir={cell.folder / stage}"]) == 0
    poisoned = {(recorded(r["file"]), r["episode"]) for r in action_free}  # as RUN/data_split.json names it
    read = {}  # (arm, stage, role) -> the split records of RUN/data_split.json
    for cell in cells:
        for stage in ("first", "run"):
            if (cell.folder / stage).is_dir():
                finite_losses(cell.folder / stage)
                split = json.loads((cell.folder / stage / "data_split.json").read_text())
                read.update({(cell.variant, stage, role): records for role, records in split.items()})
    for (arm, stage, role), records in read.items():
        ids = {(r["file"], r["episode"]) for record in records for r in record["ids"]}
        if all(record["episodes"] == "labelled" for record in records):
            assert not ids & poisoned and len(ids) == 10, (arm, stage, role)
        else:
            assert ids == poisoned and all(record["action_free"] for record in records), (arm, stage, role)
    assert {key for key in read if key[2] != "data"} == {("lara", "run", "lam_warmup"), ("lara_pre", "first", "video")}
    assert ("lapa", "first", "data") in read and ("lapa", "run", "data") in read
    for arm, phase in (("lara", "run"), ("lara_pre", "first")):  # posttrain's LAM warm-up, pretrain's LAM phase
        warmup = finite_losses(next(c for c in cells if c.variant == arm).folder / phase / "lam")
        assert all(r["lam/action"] > 0 for r in warmup), arm  # the labelled ones trained the action head
