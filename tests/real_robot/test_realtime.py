"""The node's opt-in real-time timing: SCHED_FIFO when permitted (a clear warning when not), and the
early-wake + spin sleep that never returns before its deadline."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from lara.real_robot.config import load_config
from lara.real_robot.realtime import sleep_until

pytestmark = pytest.mark.serial  # deadlines and scheduling: alone after the parallel part of make test

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = ("import os, resource; from lara.real_robot.realtime import enable_fifo; {limit}"
         "print(enable_fifo(80)); print(os.sched_getscheduler(0) == os.SCHED_FIFO)")


def run_child(code: str, prefix: tuple = ()) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_fifo_refused_gives_a_warning_that_says_how_to_allow_it():
    prefix = ()
    if os.geteuid() == 0:  # root may always: drop CAP_SYS_NICE to see what a normal user sees
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot take CAP_SYS_NICE away")
        prefix = ("setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice")
    warning, fifo = run_child(CHILD.format(limit="resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0)); "), prefix)
    assert "SCHED_FIFO priority 80 is not available" in warning and "ulimit -r" in warning, warning
    assert fifo == "False"


def test_fifo_granted_where_permitted():
    if os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_RTPRIO)[1] < 80:
        pytest.skip("this user may not use SCHED_FIFO priority 80 (no root, rtprio hard limit below 80)")
    limit = "" if os.geteuid() == 0 else "resource.setrlimit(resource.RLIMIT_RTPRIO, (80, 80)); "
    assert run_child(CHILD.format(limit=limit)) == ["None", "True"]


@pytest.mark.parametrize("spin_s", [0.0, 0.002])
def test_sleep_until_never_returns_early(spin_s):
    lateness = []
    for _ in range(20):
        deadline = time.monotonic() + 0.01
        sleep_until(deadline, spin_s)
        lateness.append(time.monotonic() - deadline)
    assert min(lateness) >= 0
    if spin_s:  # the spin absorbs the timer's wake-up latency: on time to well under a millisecond, typically
        assert np.median(lateness) < 0.0005, lateness


def test_realtime_config_is_validated():
    assert not load_config().realtime.enabled  # opt-in
    with pytest.raises(ValueError, match="priority"):
        load_config(realtime={"enabled": True, "priority": 120})
