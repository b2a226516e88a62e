"""Prefetching node on a real roscore with the simulated Franka and a policy server whose actions encode the step
they are meant for: every step runs once, in order, across chunk switches, a late reply and a lost server."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
from index_policy import OFFSET, decode, shifts
from robot_test_support import Rig, free_port, node_config, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing-sensitive: alone after the parallel part


def start_index_server(processes, port, *args):
    processes.start("server", "tests/real_robot/index_policy.py", str(port), *args)
    wait_for_port(port)


def start_node(processes, config):
    processes.start("sim", "-m", "lara.real_robot.sim_franka", "--config", str(config), "--backend", "kinematic")
    processes.start("node", "-m", "lara.real_robot.ros_node", "--config", str(config))


def executed_actions(rig) -> np.ndarray:
    """Stop the episode; its recorded (executed, post-safety) actions [N, 7]."""
    reply = rig.call("stop")
    assert reply.success and reply.message.endswith(".hdf5"), reply.message
    with h5py.File(reply.message) as f:
        return f["data/demo_0/actions"][:]


def test_prefetch_runs_every_step_once_and_drops_a_late_reply(roscore, processes, tmp_path):
    port = free_port()
    # 8 actions per chunk, the next asked for while 4 remain; replies take 120 ms, every 4th 600 ms (its image is
    # then older than max_observation_age_s: dropped). That is 0.4 s here: a camera frame up to 0.1 s old when the
    # request goes out + 120 ms + up to a period until the tick that takes the reply come near the default 0.3 s
    config = node_config(tmp_path / "node.yaml", "prefetch", port, server={"timeout_s": 1.0},
                         execute_steps=8, prefetch_steps=4, safety={"max_observation_age_s": 0.4})
    start_index_server(processes, port, "--delay-ms", "120", "--late-every", "4", "--late-ms", "600")
    start_node(processes, config)
    rig = Rig(roscore, config, "prefetch")
    try:
        rig.start_episode("count the steps")
        t0, _ = rig.wait_status(lambda s: s["state"] == "running" and not s["hold"], timeout_s=10)
        t_late, _ = rig.wait_status(lambda s: "reply too late" in s["reason"], since=t0, timeout_s=10)
        time.sleep(0.7)
        running = [s for s in rig.statuses(since=t0) if s["state"] == "running"]
        steps = decode(executed_actions(rig))
    finally:
        rig.close()
    assert steps == list(range(len(steps))) and len(steps) >= 20  # no step repeated or skipped
    # until the late reply the arm never waited: each chunk came while actions of the last one were left
    before = [s for s in running if s["tick_time"] < t_late - 0.5]
    assert len(before) >= 10 and not any(s["starved"] for s in before), [s["reason"] for s in before]
    assert min(s["round_trip_ms"] for s in running if s["round_trip_ms"]) >= 120


def test_prefetch_server_killed_mid_chunk_holds_reconnects_and_resumes(roscore, processes, tmp_path):
    port = free_port()
    # prefetch from the measured latency: ask while the remaining actions last less than the round trip + 200 ms
    config = node_config(tmp_path / "node.yaml", "prefetch_kill", port, execute_steps=10, prefetch_margin_s=0.2,
                         safety={"max_observation_age_s": 0.4})
    start_index_server(processes, port, "--delay-ms", "120")
    start_node(processes, config)
    rig = Rig(roscore, config, "prefetch_kill")
    try:
        rig.start_episode("count the steps")
        t0, _ = rig.wait_status(lambda s: s["state"] == "running" and not s["hold"], timeout_s=10)
        rig.wait_status(lambda s: s["queued"] >= 5, since=t0 + 1.0, timeout_s=5)  # mid-chunk
        processes.kill("server")
        killed = time.monotonic()
        t_hold, status = rig.wait_status(lambda s: s["hold"], since=killed, timeout_s=2)
        assert t_hold - killed <= 0.15 and "server" in status["reason"] and status["starved"], status
        time.sleep(0.5)
        held = rig.poses_between(t_hold + 0.05)
        assert len(held) >= 3 and all(np.allclose(p, held[0]) for p in held)  # one fixed target
        start_index_server(processes, port, "--delay-ms", "120")
        t_back, _ = rig.wait_status(lambda s: not s["hold"], since=time.monotonic(), timeout_s=10)
        time.sleep(0.8)
        after = [s for s in rig.statuses(since=t_back + 0.4) if s["state"] == "running"]
        steps = decode(executed_actions(rig))
    finally:
        rig.close()
    assert steps == list(range(len(steps))) and len(steps) >= 20  # resumed at the next step, none repeated
    assert after and not any(s["starved"] for s in after), [s["reason"] for s in after]


def test_prefetch_with_temporal_ensembling_on_the_node(roscore, processes, tmp_path):
    port = free_port()
    # ACT on the node: 6-action chunks, a query every step (prefetch 5), replies in 30 ms; odd and even requests'
    # chunks are shifted by +-0.25 index counts, so a lone chunk's action shows its shift and an average does not
    config = node_config(tmp_path / "node.yaml", "ensemble", port, execute_steps=6, prefetch_steps=5,
                         ensemble_decay=0.01)
    start_index_server(processes, port, "--horizon", "6", "--delay-ms", "30", "--offset")
    start_node(processes, config)
    rig = Rig(roscore, config, "ensemble")
    try:
        rig.start_episode("count the steps")
        t0, _ = rig.wait_status(lambda s: s["state"] == "running" and not s["hold"], timeout_s=10)
        time.sleep(1.5)
        running = [s for s in rig.statuses(since=t0) if s["state"] == "running"]
        actions = executed_actions(rig)
    finally:
        rig.close()
    steps = decode(actions)
    assert steps == list(range(len(steps))) and len(steps) >= 12 and not any(s["starved"] for s in running)
    off = np.abs(shifts(actions))
    assert off[0] == pytest.approx(OFFSET, abs=1e-4)  # step 0: the first chunk alone
    assert np.mean(off[2:] < OFFSET - 0.05) > 0.8, off  # later steps: averages of overlapping chunks
