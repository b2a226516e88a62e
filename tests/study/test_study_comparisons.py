"""A study file's comparisons between two variants, its cell order and decision rule, and what each cell records."""

from __future__ import annotations

import json

import pytest
import yaml

from lara import cli as lara_cli
from lara.benchmarks.study.cells import plan_cells
from lara.benchmarks.study.config import load_study
from test_study_config import finish

RULE = "LARA helps only if the lara - baseline interval excludes 0."


def study_file(tmp_path, **changes) -> tuple:
    fields = {"preset": "posttrain_token_vla", "data": [str(tmp_path)], "suite": "object", "tasks": [0, 1],
              "seeds": [100, 101, 102], "trials": 3, "out": str(tmp_path / "out"),
              "variants": {"lara_shuffled": ["lara.align.shuffle_target=true"]},
              "comparisons": ["lara - lara_shuffled"], "cell_order": [["baseline", "lara"], ["lara_shuffled"]],
              "decision_rule": RULE, **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path, fields


def test_cell_order_runs_every_seed_of_the_first_group_before_the_second(tmp_path):
    _, fields = study_file(tmp_path)
    order = [c.name for c in plan_cells(load_study(fields))]
    assert order == ["baseline/seed100", "lara/seed100", "baseline/seed101", "lara/seed101", "baseline/seed102",
                     "lara/seed102", "lara_shuffled/seed100", "lara_shuffled/seed101", "lara_shuffled/seed102"]
    shuffled = plan_cells(load_study(fields))[-1]
    assert "lara.align.shuffle_target=true" in shuffled.train_args


@pytest.mark.parametrize("changes, message", [
    ({"comparisons": ["lara - fsq"]}, "comparison 'lara - fsq' names fsq, not a variant of this study"),
    ({"comparisons": ["lara-lara_shuffled"]}, "must name two different variants as 'A - B'"),
    ({"comparisons": ["lara - lara"]}, "must name two different variants"),
    ({"cell_order": [["baseline", "lara"]]}, "cell_order must list every variant exactly once"),
    ({"cell_order": [["baseline", "lara"], ["lara", "lara_shuffled"]]}, "cell_order must list every variant"),
])
def test_a_bad_comparison_or_order_is_one_line_and_exit_2(tmp_path, capsys, changes, message):
    path, _ = study_file(tmp_path, **changes)
    assert lara_cli.main(["study", str(path), "--report-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lara study: error: invalid study:") and message in err and len(err.splitlines()) == 1


def test_the_report_holds_seed_level_figures_for_each_difference_and_each_comparison(tmp_path):
    path, fields = study_file(tmp_path)
    cells = {c.name: c for c in plan_cells(load_study(fields))}
    rows = {  # seed: (baseline, lara, lara_shuffled), 3 trials on each of 2 tasks
        100: ([1, 0, 0, 1, 1, 0], [1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 0]),
        101: ([0, 0, 0, 1, 0, 1], [1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 0, 1]),
        102: ([1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1]),
    }
    for seed, arms in rows.items():
        for variant, row in zip(("baseline", "lara", "lara_shuffled"), arms):
            finish(cells[f"{variant}/seed{seed}"], {0: row[:3], 1: row[3:]})
    assert lara_cli.main(["study", str(path), "--report-only"]) == 0
    summary = json.loads((tmp_path / "out" / "study.json").read_text())
    assert set(summary["differences"]) == {"lara", "lara_shuffled", "lara - lara_shuffled"}
    versus = summary["differences"]["lara - lara_shuffled"]
    assert versus["method"] == "seed_t" and versus["per_seed"] == pytest.approx({"100": 1 / 6, "101": 1 / 6,
                                                                                 "102": 1 / 6})
    assert versus["ci95"] == pytest.approx([1 / 6, 1 / 6])  # equal differences: no spread
    assert versus["p_signflip"] == pytest.approx(0.25) and "bootstrap" in versus
    lara = summary["differences"]["lara"]
    assert lara["per_seed"] == pytest.approx({"100": 2 / 6, "101": 2 / 6, "102": 1 / 6})
    assert set(lara["per_task"]) == {"0", "1"} and lara["per_task"]["0"]["method"] == "seed_t"
    for name in ("baseline", "lara", "lara_shuffled"):
        assert len(summary["variants"][name]["prediction95"]) == 2
    assert summary["settings"]["decision_rule"] == RULE
    text = (tmp_path / "out" / "study.md").read_text()
    assert f"Decision rule (fixed in the study file before its first cell ran): {RULE}" in text
    assert "| lara - lara_shuffled | 3 | +16.7 (100), +16.7 (101), +16.7 (102) | +16.7 |" in text
    assert text.index("Differences, at the level of the training seed") < text.index("Secondary figure")
    assert (tmp_path / "out" / "study.png").stat().st_size > 0


def test_rewrite_report_recomputes_a_written_report_from_its_cells(tmp_path, capsys):
    path, fields = study_file(tmp_path, comparisons=[], cell_order=None, variants={})
    cells = {c.name: c for c in plan_cells(load_study(fields))}
    for seed, (base, mine) in {100: ([0, 0, 1], [1, 1, 1]), 101: ([0, 1, 1], [1, 1, 1]),
                               102: ([1, 1, 1], [1, 1, 1])}.items():
        finish(cells[f"baseline/seed{seed}"], {0: base})
        finish(cells[f"lara/seed{seed}"], {0: mine})
    assert lara_cli.main(["study", str(path), "--report-only"]) == 0
    written = tmp_path / "out" / "study.json"
    kept = tmp_path / "study_kept.json"  # a committed report, its cell folders gone
    old = json.loads(written.read_text())
    old["differences"]["lara"] = {"mean": 0.3, "ci95": [0.1, 0.5]}  # as an older version's statistics wrote it
    kept.write_text(json.dumps(old))
    capsys.readouterr()
    assert lara_cli.main(["study", "--rewrite-report", str(kept)]) == 0
    new = json.loads(kept.read_text())
    assert new["differences"]["lara"]["method"] == "seed_t"
    assert new["differences"]["lara"]["per_seed"] == pytest.approx({"100": 2 / 3, "101": 1 / 3, "102": 0.0})
    assert new["cells"] == old["cells"] and new["settings"]["report"]["rewritten_from_cells_of"] == kept.name
    assert "recomputed with --rewrite-report" in kept.with_suffix(".md").read_text()
    assert kept.with_suffix(".png").is_file()
    assert lara_cli.main(["study", "--rewrite-report", str(tmp_path / "nothing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
