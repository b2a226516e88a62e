"""Period jitter of the ROS policy node's control loop, plain vs realtime, side by side in one run.

    python -m lara.real_robot.perf.control_loop_jitter [--seconds 60] [--load 6] [--rate-hz 10] [--image-size 224]

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
import time
from pathlib import Path

import numpy as np

from lara.real_robot.perf.roscore import Roscore, node_config, write_config
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
    return {name: write_config(work, name, node_config(
        work, namespace, server_port, args.rate_hz, args.image_size, execute_steps=args.execute_steps,
        realtime={"enabled": name == "realtime", "spin_ms": args.spin_ms})) for name, namespace in NODES.items()}


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
    server_port = free_port()
    with Roscore("lara_jitter") as ros:
        configs = write_configs(ros.work, args, server_port)
        procs = {"server": ros.spawn("-c", SERVER, str(server_port)),
                 "sim": ros.spawn("-m", "lara.real_robot.sim_franka", "--config", str(configs["plain"]),
                                  "--backend", args.backend, "--image-size", str(args.image_size))}
        for name in NODES:
            procs[name] = ros.spawn("-m", "lara.real_robot.ros_node", "--config", str(configs[name]),
                                    f"__name:=lara_policy_{name}")
        wait_for_port(server_port)
        statuses = {name: ros.watch(namespace, "reach forward") for name, namespace in NODES.items()}
        ros.ready(NODES.values())
        time.sleep(0.5)
        load = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.load)]
        try:
            ros.start(NODES.values())
            time.sleep(args.seconds)
            ros.stop(NODES.values())
        finally:
            for proc in load:
                proc.kill()
                proc.wait(10)
        results = {name: jitter_summary(statuses[name], args.rate_hz) for name in NODES}
        results["realtime"]["policy"] = POLICIES.get(os.sched_getscheduler(procs["realtime"].pid), "unknown")
        p99 = {name: results[name]["jitter_ms"]["p99"] for name in NODES}
        print(json.dumps({
            "rate_hz": args.rate_hz, "image": args.image_size, "backend": args.backend, "seconds": args.seconds,
            "load_processes": args.load, "load_average_1min": round(os.getloadavg()[0], 2), **results,
            "p99_plain_over_realtime": round(p99["plain"] / max(p99["realtime"], 1e-3), 2),
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
