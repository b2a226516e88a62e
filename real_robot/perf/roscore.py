"""The ROS rig the node measurements share: a roscore on a free loopback port, this process joined to it as a rospy
node, child processes that inherit its environment, node configs on their own topics, status watchers and the
start / stop services.

    with Roscore("lara_jitter") as ros:                    # work folder lara_jitter_*, node lara_jitter_benchmark
        ros.spawn("-m", "lara.real_robot.sim_franka", "--config", str(config), "--backend", "kinematic")
        statuses = ros.watch("lara", "reach forward")      # the node's status messages, as they arrive
        ros.ready(["lara"]); ros.start(["lara"]); time.sleep(60); ros.stop(["lara"])

Children run with OMP_NUM_THREADS=1 and write to `work / "processes.log"`. On exit every child still running is
terminated, then roscore's own process group (rosmaster, rosout). Needs ROS (bash scripts/install-system-deps.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from lara.real_robot.config import DEFAULT_CONFIG
from lara.real_robot.ports import free_port, wait_for_port
from lara.real_robot.ros import import_rospy


def node_config(work: Path, namespace: str, server_port: int, rate_hz: float, image_size: int, **fields) -> dict:
    """The default node config on `namespace`'s own command topics (the sim's sensor topics stay shared), asking the
    server on `server_port`, not recording; `fields` override top-level entries."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(rate_hz=rate_hz, image_size=[image_size] * 2, record=False, episodes_dir=str(work / "episodes"),
                  **fields)
    config["server"]["port"] = server_port
    config["topics"].update(namespace=namespace, equilibrium_pose=f"/{namespace}/equilibrium_pose",
                            gripper_command=f"/{namespace}/gripper_command")
    return config


def write_config(work: Path, name: str, config: dict) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Roscore:
    def __init__(self, name: str) -> None:
        """`name`: of the temporary work folder (configs, ROS_HOME, the children's log) and of this rospy node."""
        self.name = name
        self.work = Path(tempfile.mkdtemp(prefix=f"{name}_"))
        self.port = free_port()
        self.env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{self.port}", "ROS_IP": "127.0.0.1",
                    "ROS_HOME": str(self.work), "OMP_NUM_THREADS": "1"}
        self.children: list[subprocess.Popen] = []
        self.keep: list = []  # publishers and subscribers live as long as the rig
        self.rospy = None

    def __enter__(self) -> Roscore:
        os.environ.update({k: self.env[k] for k in ("ROS_MASTER_URI", "ROS_IP", "ROS_HOME")})
        self.log = open(self.work / "processes.log", "ab")
        self.roscore = subprocess.Popen(["roscore", "-p", str(self.port)], stdout=self.log, stderr=self.log,
                                        env=self.env, start_new_session=True)
        try:
            wait_for_port(self.port)
            self.rospy = import_rospy()
            self.rospy.init_node(f"{self.name}_benchmark", anonymous=True, disable_signals=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def spawn(self, *args: str) -> subprocess.Popen:
        """A Python child (`-m module ...` or `-c code ...`) in the rig's environment, logged."""
        self.children.append(subprocess.Popen([sys.executable, *args], stdout=self.log, stderr=self.log, env=self.env))
        return self.children[-1]

    def end(self, children: list[subprocess.Popen]) -> None:
        """Terminate these children and wait for them."""
        for child in children:
            if child.poll() is None:
                child.terminate()
            child.wait(10)

    def watch(self, namespace: str, instruction: str) -> list[dict]:
        """The node's status messages, collected as they arrive; its instruction published (latched)."""
        from std_msgs.msg import String

        statuses: list[dict] = []
        self.keep.append(self.rospy.Subscriber(f"/{namespace}/status", String,
                                               lambda m: statuses.append(json.loads(m.data)), queue_size=1000))
        self.keep.append(self.rospy.Publisher(f"/{namespace}/instruction", String, queue_size=1, latch=True))
        self.keep[-1].publish(instruction)
        return statuses

    def ready(self, namespaces) -> None:
        """Wait until each node's start service is up."""
        for namespace in namespaces:
            self.rospy.wait_for_service(f"/{namespace}/start", timeout=60)

    def start(self, namespaces) -> None:
        """Start an episode on each node; raises when one refuses."""
        from std_srvs.srv import Trigger

        for namespace in namespaces:
            if not self.rospy.ServiceProxy(f"/{namespace}/start", Trigger)().success:
                raise RuntimeError(f"node {namespace} refused to start; see {self.work / 'processes.log'}")

    def stop(self, namespaces) -> None:
        """End each node's episode; the watchers stop collecting."""
        from std_srvs.srv import Trigger

        for namespace in namespaces:
            self.rospy.ServiceProxy(f"/{namespace}/stop", Trigger)()
        for kept in self.keep:
            kept.unregister()
        self.keep.clear()

    def __exit__(self, *exc) -> None:
        self.end(self.children)
        os.killpg(self.roscore.pid, 15)
        self.roscore.wait(10)
        self.log.close()
