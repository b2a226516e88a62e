"""`python -m lara.benchmarks.perf.overhead --tiny --profile N` prints both arms' op groups and the host syncs."""

from __future__ import annotations

from lara.benchmarks.perf import overhead


def test_profile_prints_op_groups_of_both_arms_and_host_syncs(capsys):
    assert overhead.main(["--tiny", "--repeats", "1", "--profile", "1"]) == 0
    out = capsys.readouterr().out
    assert "profile, ms per step" in out and "with-without" in out
    for phase in ("forward", "backward", "optimizer"):
        assert f"  {phase} " in out
    assert "host syncs per step: aten::_local_scalar_dense" in out
    assert out.strip().splitlines()[-1].startswith("overhead train=")
