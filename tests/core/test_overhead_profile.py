"""The perf benchmarks in miniature: `overhead --tiny --profile N` (op groups of both arms, host syncs) and
`optimizer --tiny` (fused against foreach AdamW)."""

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


def test_the_optimizer_benchmark_races_fused_against_foreach_adamw_on_the_same_gradients(capsys):
    """`python -m lara.benchmarks.perf.optimizer`: both kernels timed, and the weights they update stay together."""
    from lara.benchmarks.perf import optimizer

    assert optimizer.main(["--tiny", "--repeats", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(field.split("=") for field in last.removeprefix("optimizer ").split())
    assert last.startswith("optimizer ") and fields.keys() == {"fused", "lara", "drift"}
    assert float(fields["fused"]) > 0 and float(fields["lara"]) > 0
    assert float(fields["drift"]) < 1e-5  # the same AdamW, rounded differently: not another algorithm
