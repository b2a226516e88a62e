"""Holds at chunk boundaries: the synchronous ROS node vs the prefetching one, side by side, against a slow policy.

    python -m lara.benchmarks.perf.chunk_latency [--latencies-ms 150,400] [--seconds 30] [--rate-hz 10] [--chunk 10]

Starts a roscore on a free loopback port and the simulated Franka (kinematic backend: the sim adds little load);
then, for each latency in turn, two policy servers (`lara.real_robot.server.serve`, what `lara serve` runs, with
a policy that sleeps the latency and returns a `--chunk`-action chunk) and two nodes on the same camera and state
topics, each with its own server: one synchronous (`execute_steps` = the chunk: ask when it is used up, hold
while the reply is out), one prefetching (`prefetch_margin_s` 0.05: ask while the remaining actions last less
than the slowest recent round trip + 50 ms). Both run an episode for `--seconds` at once, so they see the same
load. A tick on which a node held for want of an action (status `starved`), counted from its first executed
action on (the first chunk is waited for in any mode), is a hold; the figure is holds per minute.
`safety.max_observation_age_s` is latency + 0.3 s for both nodes: a reply whose image is older when its first
action would run is dropped by design, and that age is the camera frame's age when the request went out (up to
0.1 s at the sim's 10 fps) + the round trip + the wait for the next tick (up to one period); the default 0.3 s
would drop every 400 ms reply and, now and then, a 150 ms one. Prints one JSON line per latency, then

    chunk_latency hold_sync=<holds/min> hold_async=<holds/min> latency_ms=<ms>      (the first latency)

Needs ROS (bash scripts/install-system-deps.sh).
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
import sys, time, numpy as np
from lara.real_robot.server import serve
class Sleeping:
    def __init__(self, seconds, chunk): self.seconds, self.chunk = seconds, chunk
    def reset(self, instruction): pass
    def act(self, obs):
        time.sleep(self.seconds)
        return np.tile(np.array([0, 0, 0, 0, 0, 0, -1], np.float32), (self.chunk, 1))
serve(Sleeping(float(sys.argv[2]) / 1000.0, int(sys.argv[3])), "127.0.0.1", int(sys.argv[1]))
"""
MODES = ("sync", "async")
MARGIN_S = 0.05


def write_config(work: Path, args, mode: str, namespace: str, server_port: int, latency_ms: float) -> Path:
    """A node config: the sim's sensor topics, its own namespace and command topics, sync or prefetching."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(rate_hz=args.rate_hz, image_size=[args.image_size] * 2, record=False,
                  episodes_dir=str(work / "episodes"), execute_steps=args.chunk,
                  prefetch_margin_s=MARGIN_S if mode == "async" else None)
    config["server"].update(port=server_port, timeout_s=latency_ms / 1000.0 + 1.0)
    config["safety"]["max_observation_age_s"] = latency_ms / 1000.0 + 0.3
    config["topics"].update(namespace=namespace, equilibrium_pose=f"/{namespace}/equilibrium_pose",
                            gripper_command=f"/{namespace}/gripper_command")
    path = work / f"{namespace}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def holds_summary(statuses: list[dict], rate_hz: float) -> dict:
    """Holds for want of an action per minute, from the first executed action to the end of the episode."""
    running = [s for s in statuses if s["state"] == "running"]
    first = next(i for i, s in enumerate(running) if not s["hold"])
    counted = running[first:]
    minutes = (counted[-1]["tick_time"] - counted[0]["tick_time"] + 1.0 / rate_hz) / 60.0
    starved = [s for s in counted if s["starved"]]
    round_trips = [s["round_trip_ms"] for s in counted if s["round_trip_ms"] is not None]
    reasons: dict[str, int] = {}
    for s in starved:
        reason = s["reason"].split(":")[0].split(" (")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"ticks": len(counted), "executed": sum(not s["hold"] for s in counted), "holds": len(starved),
            "holds_per_min": round(len(starved) / minutes, 1), "hold_reasons": reasons,
            "round_trip_ms_p50": round(float(np.median(round_trips)), 1) if round_trips else None,
            "first_action_tick": first}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latencies-ms", default="150,400", help="comma-separated policy latencies, milliseconds")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each latency's episode")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="node control rate")
    parser.add_argument("--chunk", type=int, default=10, help="actions per chunk, all of which may run")
    parser.add_argument("--image-size", type=int, default=224, help="simulated camera side, pixels")
    args = parser.parse_args(argv)
    latencies = [float(x) for x in args.latencies_ms.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="lara_chunk_latency_"))
    master_port = free_port()
    env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{master_port}", "ROS_IP": "127.0.0.1",
           "ROS_HOME": str(work), "OMP_NUM_THREADS": "1"}
    os.environ.update({k: env[k] for k in ("ROS_MASTER_URI", "ROS_IP", "ROS_HOME")})
    log = open(work / "processes.log", "ab")
    roscore = subprocess.Popen(["roscore", "-p", str(master_port)], stdout=log, stderr=log, env=env,
                               start_new_session=True)
    procs: list[subprocess.Popen] = []

    def spawn(*a) -> subprocess.Popen:
        procs.append(subprocess.Popen([sys.executable, *a], stdout=log, stderr=log, env=env))
        return procs[-1]

    try:
        wait_for_port(master_port)
        from lara.real_robot.ros import import_rospy

        rospy = import_rospy()
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        rospy.init_node("lara_chunk_latency_benchmark", anonymous=True, disable_signals=True)
        sim_config = write_config(work, args, "sync", "sim_topics", free_port(), latencies[0])
        spawn("-m", "lara.real_robot.sim_franka", "--config", str(sim_config), "--backend", "kinematic",
              "--image-size", str(args.image_size))
        results = []
        for latency in latencies:
            statuses: dict[str, list] = {mode: [] for mode in MODES}
            nodes, keep = {}, []  # keep: publishers and subscribers live as long as the run
            for mode in MODES:
                namespace, port = f"lara_{mode}_{int(latency)}", free_port()
                spawn("-c", SERVER, str(port), str(latency), str(args.chunk))
                wait_for_port(port)
                config = write_config(work, args, mode, namespace, port, latency)
                nodes[mode] = (namespace, spawn("-m", "lara.real_robot.ros_node", "--config", str(config),
                                                f"__name:=lara_policy_{namespace}"))
                keep.append(rospy.Subscriber(f"/{namespace}/status", String, lambda m, k=mode: statuses[k].append(
                    json.loads(m.data)), queue_size=1000))
                keep.append(rospy.Publisher(f"/{namespace}/instruction", String, queue_size=1, latch=True))
                keep[-1].publish("reach forward")
            for namespace, _ in nodes.values():
                rospy.wait_for_service(f"/{namespace}/start", timeout=60)
            time.sleep(0.5)
            for namespace, _ in nodes.values():
                if not rospy.ServiceProxy(f"/{namespace}/start", Trigger)().success:
                    raise RuntimeError(f"node {namespace} refused to start; see {work / 'processes.log'}")
            time.sleep(args.seconds)
            for namespace, _ in nodes.values():
                rospy.ServiceProxy(f"/{namespace}/stop", Trigger)()
            for sub in keep:
                sub.unregister()
            result = {"latency_ms": latency, "rate_hz": args.rate_hz, "chunk": args.chunk, "seconds": args.seconds,
                      "image": args.image_size, "prefetch_margin_s": MARGIN_S,
                      "load_average_1min": round(os.getloadavg()[0], 2),
                      **{mode: holds_summary(statuses[mode], args.rate_hz) for mode in MODES}}
            sync, prefetch = result["sync"]["holds_per_min"], result["async"]["holds_per_min"]
            result["async_over_sync"] = round(prefetch / sync, 3) if sync else None
            print(json.dumps(result), flush=True)
            results.append(result)
            for proc in procs[1:]:  # this latency's servers and nodes; the sim stays
                proc.terminate()
                proc.wait(10)
            del procs[1:]
        first = results[0]
        print(f"chunk_latency hold_sync={first['sync']['holds_per_min']} hold_async={first['async']['holds_per_min']} "
              f"latency_ms={first['latency_ms']:g}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
        os.killpg(roscore.pid, 15)
        roscore.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
