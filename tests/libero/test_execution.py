"""`lara eval libero` running chunks as the ROS node does: `--execute-steps`, `--prefetch-steps`, `--ensemble`,
`--latency-steps` (the bookkeeping itself is tested without a simulator in tests/real_robot/test_chunking.py)."""

import json
from pathlib import Path

import pytest

from lara import cli as lara_cli

POLICY = Path(__file__).parent / "chunk_policy.py"


@pytest.mark.slow
def test_libero_episode_with_execute_steps_ensemble_and_latency(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "libero", "--policy", f"{POLICY}:small_moves", "--suite", "object", "--tasks", "0", "--trials", "1",
            "--camera-size", "32", "--max-steps", "12", "--no-video", "--execute-steps", "4", "--ensemble", "0.5",
            "--latency-steps", "1", "--out", str(out)]
    assert lara_cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    episode = results["tasks"][0]["episodes"][0]
    assert episode["failure_reason"] is None and episode["steps"] == 12 and episode["env_steps"] == 22
    # prefetch 3 = execute-steps - 1 (ACT): the first chunk, asked for at step 0, arrives at step 1 (one hold);
    # from step 2 on, a chunk is asked for every step and each arrives in time: 1 + 10 chunks
    assert (episode["chunks"], episode["holds"]) == (11, 1)
    assert results["protocol"]["execution"] == {"execute_steps": 4, "prefetch_steps": 3, "ensemble_decay": 0.5,
                                                "latency_steps": 1}
    assert "held on 1 of 12 steps waiting for chunks" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--ensemble", "0.01"], "--ensemble averages overlapping chunks: give --execute-steps N"),
    (["--execute-steps", "4", "--prefetch-steps", "4"], "--prefetch-steps must be below --execute-steps 4"),
    (["--execute-steps", "4", "--prefetch-steps", "0", "--ensemble", "0.01"], "--prefetch-steps 1 or more"),
    (["--latency-steps", "-2"], "argument --latency-steps: expected an integer >= 0, got '-2'"),
], ids=["ensemble-without-overlap", "prefetch-whole-chunk", "ensemble-synchronous", "latency"])
def test_bad_prefetch_and_ensemble_flags_are_refused_on_one_line(tmp_path, capsys, flags, message):
    out = tmp_path / "eval"
    argv = ["eval", "libero", "--policy", "scripted", "--suite", "object", *flags, "--out", str(out)]
    assert lara_cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara eval: error: ") and message in error and len(error.strip().splitlines()) == 1
    assert not out.exists()
