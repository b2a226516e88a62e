"""Statistics files are checked where they are read (issue 38, finding 5): data.statistics_path, LeRobot's
meta/stats.json and a checkpoint's statistics. Swapped or NaN bounds, a wrong dimension, a missing or non-JSON file
and a missing dataset name are one line naming the file, before training or before a policy acts."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from lara import cli
from lara.data import EpisodeDataset
from lara.errors import InputError, MissingPath

STATS = {"mean": [0.0] * 7, "std": [1.0] * 7, "min": [-1.0] * 7, "max": [1.0] * 7, "q01": [-0.9] * 7,
         "q99": [0.9] * 7, "mask": [True] * 6 + [False]}


def with_values(**changes) -> dict:
    """The `libero` statistics with some lists changed, e.g. q01=[...]."""
    return {"libero": {"action": {**STATS, **changes}}}


def swapped():
    q01, q99 = list(STATS["q01"]), list(STATS["q99"])
    q01[2], q99[2] = q99[2], q01[2]
    return with_values(q01=q01, q99=q99)


CASES = {
    "swapped": (swapped(), r"q01 \(0.9\) lies above q99 \(-0.9\) at dimension 2; expected q01 <= q99 \(are they swapped"),
    "nan-quantile": (with_values(q99=[0.9] * 6 + [float("nan")]), r"q99 holds nan at dimension 6; expected finite"),
    "inf-mean": (with_values(mean=[float("inf")] + [0.0] * 6), r"mean holds inf at dimension 0; expected finite"),
    "six-d": (with_values(**{k: v[:6] for k, v in STATS.items()}),
              r"the action statistics have 6 dimensions, the actions of .* 7"),
    "ragged": (with_values(q01=[-0.9] * 5), r"expected lists of one length"),
    "strings": (with_values(q01=["a"] * 7), r"statistics must be lists of numbers"),
    "other-name": ({"bridge": {"action": STATS}}, r"has no statistics for 'libero'; it has \['bridge'\]"),
    "no-action": ({"libero": {"proprio": STATS}}, r"missing the `action` entry"),
    "a-list": ([1, 2], r"expected a mapping of dataset names to statistics, got list"),
}


@pytest.fixture
def demos(tmp_path, write_file):
    write_file(tmp_path / "a_demo.hdf5", [12, 9])
    return tmp_path / "a_demo.hdf5"


@pytest.mark.parametrize("case", CASES)
def test_a_bad_statistics_file_is_named(demos, tmp_path, case):
    content, message = CASES[case]
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message) as caught:
        EpisodeDataset(paths=demos, statistics_path=path)
    assert str(path) in str(caught.value)


def test_a_missing_or_non_json_file(demos, tmp_path):
    with pytest.raises(MissingPath, match=r"nowhere.json: no statistics file"):
        EpisodeDataset(paths=demos, statistics_path=tmp_path / "nowhere.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match=r"binary.json: not a JSON statistics file"):
        EpisodeDataset(paths=demos, statistics_path=tmp_path / "binary.json")
    (tmp_path / "half.json").write_text('{"libero": {"action": ')
    with pytest.raises(InputError, match=r"half.json: not a JSON statistics file"):
        EpisodeDataset(paths=demos, statistics_path=tmp_path / "half.json")


def test_equal_bounds_are_a_constant_dimension_and_pass(demos, tmp_path):
    """q01 == q99 is what a dimension that never moves gives (the core computes such statistics itself)."""
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(with_values(q01=[0.0] * 7, q99=[0.0] * 7)))
    data = EpisodeDataset(paths=demos, statistics_path=path)
    assert np.all(data[0]["actions"][:, :6].numpy() == 0)


def test_lara_train_ends_a_swapped_statistics_file_on_one_line(demos, tmp_path, capsys):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(swapped()))
    assert cli.main(["train", "posttrain_token_vla", f"data.paths=[{demos}]", f"data.statistics_path={path}",
                     f"output_dir={tmp_path / 'run'}", "train.wandb.mode=disabled"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: ") and error.count("\n") == 1 and str(path) in error
    assert "lies above q99" in error and not (tmp_path / "run" / "final").exists()


def test_lerobot_stats_json_is_checked(tmp_path):
    pytest.importorskip("pyarrow")
    from lara.data.lerobot import LeRobotSource
    from lerobot_fixtures import write_v30

    write_v30(tmp_path / "ds", [12, 7], ["pick the cup", "open the drawer"], cameras={"observation.images.top": "image"})
    stats = {key: {"min": [0.0] * n, "max": [1.0] * n, "mean": [0.5] * n, "std": [0.1] * n, "q01": [0.01] * n,
                   "q99": [0.99] * n, "count": [19]} for key, n in (("action", 7), ("observation.state", 8))}
    stats["action"]["q01"][3] = float("nan")
    (tmp_path / "ds/meta/stats.json").write_text(json.dumps(stats))
    with pytest.raises(InputError, match=r"meta/stats.json action: q01 holds nan at dimension 3"):
        LeRobotSource(tmp_path / "ds").statistics()


@pytest.fixture
def checkpoint(tmp_path):
    from lara.vla.token_vla import tiny_token_vla

    model = tiny_token_vla()
    model.config.norm_stats = {"q01": STATS["q01"], "q99": STATS["q99"], "mask": STATS["mask"]}
    model.save_pretrained(tmp_path / "vla")
    (tmp_path / "vla" / "dataset_statistics.json").write_text(json.dumps(with_values()))
    return tmp_path / "vla"


def test_a_checkpoint_with_nan_statistics_is_refused_at_load_by_eval_and_serve(checkpoint, capsys):
    from lara.vla.backbones import load_policy

    assert load_policy(checkpoint).model.config.norm_stats["q01"] == STATS["q01"]  # intact: it loads
    statistics = checkpoint / "dataset_statistics.json"
    statistics.write_text(json.dumps(with_values(q01=[float("nan")] * 7)))
    with pytest.raises(InputError, match=rf"{statistics}\['libero'\]\['action'\]: q01 holds nan at dimension 0"):
        load_policy(checkpoint)
    with socket.socket() as probe:  # a free port: serve checks it before it loads the policy
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capsys.readouterr()  # the loads above print transformers' progress bars
    assert cli.main(["serve", "--checkpoint", str(checkpoint), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara serve: error: ") and error.count("\n") == 1 and str(statistics) in error
    statistics.write_text(json.dumps(with_values()))
    config = json.loads((checkpoint / "config.json").read_text())
    config["norm_stats"]["q99"][1] = -2.0  # what predict_action un-normalises with: below its q01
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"config.json norm_stats: q01 \(-0.9\) lies above q99 \(-2\) at dimension 1"):
        load_policy(checkpoint)
