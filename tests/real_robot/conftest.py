"""Fixtures for the real-robot tests: an in-process policy server, a real roscore, child processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tiny_policy, robot_test_support

from robot_test_support import Processes, ServerThread, free_port, normal_scheduling, wait_for_port  # noqa: E402


@pytest.fixture
def server_factory():
    servers = []

    def make(policy, metadata=None, token=None):
        servers.append(ServerThread(policy, metadata, token))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def roscore(tmp_path_factory):
    """roscore on 127.0.0.1:<free port>; this test process joins it as a rospy node."""
    port = free_port()
    ros_home = tmp_path_factory.mktemp("ros_home")
    os.environ.update(ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1", ROS_HOME=str(ros_home),
                      ROS_LOG_DIR=str(ros_home / "log"))
    os.environ.pop("ROS_HOSTNAME", None)
    proc = subprocess.Popen(["roscore", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=normal_scheduling,
                            start_new_session=True)
    try:
        wait_for_port(port)
        from lara.real_robot.ros import import_rospy

        rospy = import_rospy()
        rospy.init_node("lara_tests", anonymous=True, disable_signals=True)
        yield rospy
        rospy.signal_shutdown("tests done")  # ends rospy's loops, e.g. an action server's non-daemon thread
    finally:
        os.killpg(proc.pid, 15)  # roscore's own group: rosmaster and rosout
        proc.wait(10)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
