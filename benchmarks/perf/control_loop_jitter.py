"""Period jitter of the ROS policy node's control loop, plain vs realtime, side by side in one run.

    python -m lara.benchmarks.perf.control_loop_jitter [--seconds 60] [--load 6] [--rate-hz 10] [--image-size 224]

Starts a roscore on a free loopback port, the simulated Franka (`--backend`, kinematic by default so the
sim itself adds little load), one policy server (zero-work policy, 10-action chunks) and two nodes on
the same camera and state topics: one plain, one with `realtime.enabled` (SCHED_FIFO when permitted +
early-wake spin; see real_robot/realtime.py). `--load N` adds N busy-looping processes for the
measurement. Both nodes run an episode for `--seconds` at once, so they see the same load; their own
tick times (time.monotonic() at the start of each period, from the status topic) give jitter =
|period - 1/rate|. Prints p50 / p99 / max in milliseconds per node, the scheduling policy the realtime
node's control thread actually got, and the plain / realtime p99 ratio. Needs ROS
(bash scripts/install-system-deps.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from lara.real_robot.config import DEFAULT_CONFIG
from lara.real_robot.ports import free_port, wait_for_port

SERVER = """
import sys, numpy as np
from lara.real_robot.server import serve
class ZeroWork:
    def reset(self, instruction): pass
    def act(self, obs): return np.full((10, 7), 0.1, np.float32)
serve(ZeroWork(), "127.0.0.1", int(sys.argv[1]))
"""
BUSY = "while True: pass"
NODES = {"plain": "lara", "realtime": "lara_rt"}  # name -> namespace of its own topics and services
POLICIES = {getattr(os, name): name for name in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE")
            if hasattr(os, name)}


def write_configs(work: Path, args, server_port: int) -> dict[str, Path]:
    """One config per node: same sensor topics, own namespace and command topics, realtime on or off."""
    paths = {}
    for name, namespace in NODES.items():
        config = yaml.safe_load(DEFAULT_CONFIG.read_text())
        config.update(rate_hz=args.rate_hz, image_size=[args.image_size] * 2, record=False,
                      episodes_dir=str(work / "episodes"), execute_steps=args.execute_steps)
        config["server"]["port"] = server_port
        config["topics"].update(namespace=namespace, equilibrium_pose=f"/{namespace}/equilibrium_pose",
                                gripper_command=f"/{namespace}/gripper_command")
        config["realtime"] = {"enabled": name == "realtime", "spin_ms": args.spin_ms}
        paths[name] = work / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config))
    return paths


def jitter_summary(statuses: list[dict], rate_hz: float) -> dict:
    running = [s for s in statuses if s["state"] == "running"]
    periods_ms = np.diff([s["tick_time"] for s in running]) * 1000.0
    jitter = np.abs(periods_ms - 1000.0 / rate_hz)
    return {"periods": len(periods_ms), "executed": sum(not s["hold"] for s in running),
            "period_ms_p50": round(float(np.percentile(periods_ms, 50)), 3),
            "jitter_ms": {"p50": round(float(np.percentile(jitter, 50)), 3),
                          "p99": round(float(np.percentile(jitter, 99)), 3), "max": round(float(jitter.max()), 3)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured episode")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes running during the measurement")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="node control rate")
    parser.add_argument("--image-size", type=int, default=224, help="simulated camera side, pixels")
    parser.add_argument("--execute-steps", type=int, default=1, help="actions executed per query")
    parser.add_argument("--spin-ms", type=float, default=2.0, help="realtime node: wake this early, then spin")
    parser.add_argument("--backend", choices=("kinematic", "robosuite"), default="kinematic", help="sim Franka backend")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lara_jitter_"))
    master_port, server_port = free_port(), free_port()
    configs = write_configs(work, args, server_port)
    env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{master_port}", "ROS_IP": "127.0.0.1",
           "ROS_HOME": str(work), "OMP_NUM_THREADS": "1"}
    os.environ.update({k: env[k] for k in ("ROS_MASTER_URI", "ROS_IP", "ROS_HOME")})
    log = open(work / "processes.log", "ab")
    roscore = subprocess.Popen(["roscore", "-p", str(master_port)], stdout=log, stderr=log, env=env,
                               start_new_session=True)
    procs: dict[str, subprocess.Popen] = {}
    load: list[subprocess.Popen] = []
    try:
        wait_for_port(master_port)

        def spawn(name, *a):
            procs[name] = subprocess.Popen([sys.executable, *a], stdout=log, stderr=log, env=env)

        spawn("server", "-c", SERVER, str(server_port))
        spawn("sim", "-m", "lara.real_robot.sim_franka", "--config", str(configs["plain"]), "--backend", args.backend,
              "--image-size", str(args.image_size))
        for name in NODES:
            spawn(name, "-m", "lara.real_robot.ros_node", "--config", str(configs[name]), f"__name:=lara_policy_{name}")
        wait_for_port(server_port)
        from lara.real_robot.ros import import_rospy

        rospy = import_rospy()
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        rospy.init_node("lara_jitter_benchmark", anonymous=True, disable_signals=True)
        statuses: dict[str, list] = {name: [] for name in NODES}
        keep = []  # publishers and subscribers live as long as the run
        for name, namespace in NODES.items():
            keep.append(rospy.Subscriber(f"/{namespace}/status", String, lambda m, n=name: statuses[n].append(
                json.loads(m.data)), queue_size=1000))
            keep.append(rospy.Publisher(f"/{namespace}/instruction", String, queue_size=1, latch=True))
            keep[-1].publish("reach forward")
            rospy.wait_for_service(f"/{namespace}/start", timeout=60)
        time.sleep(0.5)
        load = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.load)]
        for namespace in NODES.values():
            if not rospy.ServiceProxy(f"/{namespace}/start", Trigger)().success:
                raise RuntimeError(f"node {namespace} refused to start; see {work / 'processes.log'}")
        time.sleep(args.seconds)
        for namespace in NODES.values():
            rospy.ServiceProxy(f"/{namespace}/stop", Trigger)()
        results = {name: jitter_summary(statuses[name], args.rate_hz) for name in NODES}
        results["realtime"]["policy"] = POLICIES.get(os.sched_getscheduler(procs["realtime"].pid), "unknown")
        p99 = {name: results[name]["jitter_ms"]["p99"] for name in NODES}
        print(json.dumps({
            "rate_hz": args.rate_hz, "image": args.image_size, "backend": args.backend, "seconds": args.seconds,
            "load_processes": args.load, "load_average_1min": round(os.getloadavg()[0], 2), **results,
            "p99_plain_over_realtime": round(p99["plain"] / max(p99["realtime"], 1e-3), 2),
        }))
    finally:
        for proc in load:
            proc.kill()
        for proc in [*load, *procs.values()]:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
        os.killpg(roscore.pid, 15)
        roscore.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
