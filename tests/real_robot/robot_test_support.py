"""Helpers for the real-robot tests. A unique module name, so it never collides with another folder's
conftest module when the whole suite runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from lara.real_robot.ports import free_port, wait_for_port  # noqa: F401  (re-exported for the tests)


def normal_scheduling() -> None:
    """Start a child under SCHED_OTHER, as a user's shell would, whatever the test process runs under.
    A CI run's pytest process was found under SCHED_FIFO 99 (SVT-AV1, driven by the data tests' video
    encoding, leaves its caller there as root); its children inherited that, and two of them busy for a
    moment starved roscore on 2 cores: the gripper test hung for 17 minutes. A node that wants real time
    asks for it itself (`realtime.enabled`)."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

HERE = Path(__file__).parent
REPO = HERE.parent.parent


class ServerThread:
    """`serve_async` on a background event loop; `stop()` shuts it down."""

    def __init__(self, policy, metadata=None, token=None) -> None:
        from lara.real_robot.server import serve_async

        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._stop = None
        ready = threading.Event()

        async def main():
            self._stop = asyncio.Event()
            await serve_async(policy, "127.0.0.1", self.port, metadata, ready=ready, stop=self._stop, token=token)

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("policy server did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


class Processes:
    """Processes started by one test; each is stopped by its own id at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir, self.procs = log_dir, {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.procs[name] = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=REPO, env=env, preexec_fn=normal_scheduling)
        return self.procs[name]

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """SIGTERM to every process; they are waited for (and killed after 5 s) in a thread, so the next test does
        not wait the ~0.8 s a rospy node takes to exit (its loop ends within a period; rospy's own shutdown is the
        rest). Tests use their own topic prefixes, so a node still exiting does not meet the next test's."""
        procs = list(self.procs.values())
        for proc in procs:
            proc.terminate()
        threading.Thread(target=_reap, args=(procs,), name="reap test processes").start()  # not a daemon: pytest
        # waits for it before it exits


def _reap(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def node_config(path: Path, prefix: str, server_port: int, server: dict | None = None, **overrides) -> Path:
    """A node config with every topic under `prefix` (tests never hear each other's nodes)."""
    import yaml

    from lara.real_robot.config import DEFAULT_CONFIG

    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["topics"] = {k: (f"/{prefix}{v}" if isinstance(v, str) and v.startswith("/") else v)
                      for k, v in data["topics"].items()}
    data["topics"]["namespace"] = f"{prefix}/lara"
    data["server"].update(port=server_port, timeout_s=0.3, connect_timeout_s=0.3, backoff_s=0.1, max_backoff_s=0.3)
    data["server"].update(server or {})
    data.update(image_size=[96, 96], episodes_dir=str(path.parent / "episodes"))
    data.update(overrides)
    path.write_text(yaml.safe_dump(data))
    return path


class Rig:
    """The test process's view of one node: its status, the poses and gripper commands it publishes."""

    def __init__(self, rospy, config_path, prefix):
        from geometry_msgs.msg import PoseStamped
        from std_msgs.msg import Bool, Float64, String

        self.rospy, self.ns, self.prefix = rospy, f"/{prefix}/lara", prefix
        self.lock = threading.Lock()
        self.status, self.poses, self.grippers = [], [], []
        self.subs = [
            rospy.Subscriber(f"{self.ns}/status", String, self._on_status, queue_size=100),
            rospy.Subscriber(f"/{prefix}/cartesian_impedance_example_controller/equilibrium_pose", PoseStamped,
                             self._on_pose, queue_size=100),
            rospy.Subscriber(f"/{prefix}/lara/gripper_command", Float64,
                             lambda m: self.grippers.append(m.data), queue_size=100),
        ]
        self.instruction = rospy.Publisher(f"{self.ns}/instruction", String, queue_size=1, latch=True)
        self.success = rospy.Publisher(f"{self.ns}/success", Bool, queue_size=1, latch=True)
        self.estop = rospy.Publisher(f"{self.ns}/estop", Bool, queue_size=1)

    def _on_status(self, msg):
        with self.lock:
            self.status.append((time.monotonic(), json.loads(msg.data)))

    def _on_pose(self, msg):
        p = msg.pose.position
        with self.lock:
            self.poses.append((time.monotonic(), np.array([p.x, p.y, p.z])))

    def call(self, name):
        from std_srvs.srv import Trigger

        self.rospy.wait_for_service(f"{self.ns}/{name}", timeout=30)
        return self.rospy.ServiceProxy(f"{self.ns}/{name}", Trigger)()

    def start_episode(self, instruction):
        """Wait for the node to be idle, set the instruction and start an episode."""
        self.wait_status(lambda s: s["state"] == "idle", timeout_s=30)
        self.instruction.publish(instruction)
        time.sleep(0.3)  # the instruction topic is asynchronous: let it arrive before `start`
        assert self.call("start").success

    def wait_status(self, predicate, timeout_s=10.0, since=0.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                for t, status in self.status:
                    if t >= since and predicate(status):
                        return t, status
            time.sleep(0.02)
        last = self.status[-1][1] if self.status else None
        raise AssertionError(f"no matching status within {timeout_s} s; last status: {last}")

    def statuses(self, since=0.0, until=float("inf")):
        with self.lock:
            return [s for t, s in self.status if since <= t <= until]

    def poses_between(self, since, until=float("inf")):
        with self.lock:
            return [p for t, p in self.poses if since <= t <= until]

    def close(self):
        for sub in self.subs:
            sub.unregister()
