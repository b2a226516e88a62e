"""Opt-in real-time timing for the node's control loop (`realtime.enabled` in the config, or --realtime).

Two independent measures against period jitter on a loaded machine:
  - SCHED_FIFO for the control thread (`os.sched_setscheduler`): a runnable real-time thread preempts
    every normal one, so a busy CPU no longer delays its wake-up. Needs root, CAP_SYS_NICE or an
    rtprio limit (`ulimit -r`, /etc/security/limits.conf); without it the loop runs with a warning.
    Threads the control thread starts afterwards (the inference worker) inherit the policy.
  - wake early, then spin: sleep until `spin_ms` before the deadline, then poll the clock up to it, so
    the timer's wake-up latency and slack land before the deadline instead of after it.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from pydantic import BaseModel, Field

from lara.real_robot.safety import STRICT


class RealtimeConfig(BaseModel):
    model_config = STRICT

    enabled: bool = Field(False, description="use SCHED_FIFO (when permitted) and the early-wake + spin sleep")
    priority: int = Field(80, ge=1, le=99, description="SCHED_FIFO priority of the control thread (franka_ros uses 80-90 on its RT kernel)")
    spin_ms: float = Field(2.0, ge=0.0, le=20.0, description="how long before each deadline the loop wakes and starts spinning")


def enable_fifo(priority: int) -> Optional[str]:
    """Put the calling thread under SCHED_FIFO; None when it worked, otherwise the warning to print."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as exc:  # AttributeError: not Linux; PermissionError: not allowed
        return (f"SCHED_FIFO priority {priority} is not available ({type(exc).__name__}: {exc}); the control loop "
                "keeps normal scheduling. Allow it with an rtprio limit for this user (`ulimit -r 99`, or "
                "limits.conf) or CAP_SYS_NICE.")
    return None


def sleep_until(deadline: float, spin_s: float = 0.0) -> None:
    """Return at `deadline` (time.monotonic() seconds): sleep until `spin_s` before it, then spin."""
    remaining = deadline - time.monotonic() - spin_s
    if remaining > 0:
        time.sleep(remaining)
    while time.monotonic() < deadline:
        pass
