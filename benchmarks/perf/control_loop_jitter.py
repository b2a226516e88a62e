"""Period jitter of the ROS policy node's control loop, closed on the simulated Franka.

    python -m lara.benchmarks.perf.control_loop_jitter [--seconds 60] [--rate-hz 10] [--image-size 224]

Starts a roscore on a free loopback port, the kinematic sim Franka, a policy server (zero-work
policy, 10-action chunks) and the node, all as separate processes, runs an episode for `--seconds`,
and reads the node's own tick times from its status topic (time.monotonic() at the start of each
period). Jitter = |period - 1/rate|; prints p50 / p99 / max in milliseconds, and how many periods
executed an action. Needs ROS (bash scripts/install-system-deps.sh).
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured episode")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="node control rate")
    parser.add_argument("--image-size", type=int, default=224, help="simulated camera side, pixels")
    parser.add_argument("--execute-steps", type=int, default=1, help="actions executed per query")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lara_jitter_"))
    master_port, server_port = free_port(), free_port()
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(rate_hz=args.rate_hz, image_size=[args.image_size] * 2, record=False,
                  episodes_dir=str(work / "episodes"), execute_steps=args.execute_steps)
    config["server"]["port"] = server_port
    (work / "node.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{master_port}", "ROS_IP": "127.0.0.1",
           "ROS_HOME": str(work), "OMP_NUM_THREADS": "1"}
    os.environ.update({k: env[k] for k in ("ROS_MASTER_URI", "ROS_IP", "ROS_HOME")})
    log = open(work / "processes.log", "ab")
    roscore = subprocess.Popen(["roscore", "-p", str(master_port)], stdout=log, stderr=log, env=env,
                               start_new_session=True)
    procs = []
    try:
        wait_for_port(master_port)
        spawn = lambda *a: procs.append(subprocess.Popen([sys.executable, *a], stdout=log, stderr=log, env=env))  # noqa: E731
        spawn("-c", SERVER, str(server_port))
        spawn("-m", "lara.real_robot.sim_franka", "--config", str(work / "node.yaml"),
              "--image-size", str(args.image_size))
        spawn("-m", "lara.real_robot.ros_node", "--config", str(work / "node.yaml"))
        wait_for_port(server_port)
        from lara.real_robot.ros import import_rospy

        rospy = import_rospy()
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        rospy.init_node("lara_jitter_benchmark", anonymous=True, disable_signals=True)
        statuses = []
        rospy.Subscriber("/lara/status", String, lambda m: statuses.append(json.loads(m.data)), queue_size=1000)
        rospy.Publisher("/lara/instruction", String, queue_size=1, latch=True).publish("reach forward")
        rospy.wait_for_service("/lara/start", timeout=60)
        time.sleep(0.5)
        if not rospy.ServiceProxy("/lara/start", Trigger)().success:
            raise RuntimeError(f"the node refused to start; see {work / 'processes.log'}")
        time.sleep(args.seconds)
        rospy.ServiceProxy("/lara/stop", Trigger)()
        running = [s for s in statuses if s["state"] == "running"]
        periods_ms = np.diff([s["tick_time"] for s in running]) * 1000.0
        jitter = np.abs(periods_ms - 1000.0 / args.rate_hz)
        print(json.dumps({
            "rate_hz": args.rate_hz, "image": args.image_size, "periods": len(periods_ms),
            "executed": sum(not s["hold"] for s in running),
            "period_ms_p50": round(float(np.percentile(periods_ms, 50)), 3),
            "jitter_ms": {"p50": round(float(np.percentile(jitter, 50)), 3),
                          "p99": round(float(np.percentile(jitter, 99)), 3), "max": round(float(jitter.max()), 3)},
        }))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        os.killpg(roscore.pid, 15)
        roscore.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
