"""Holds at chunk boundaries: the synchronous ROS node vs the prefetching one, side by side, against a slow policy.

    python -m lara.real_robot.perf.chunk_latency [--latencies-ms 150,400] [--seconds 30] [--rate-hz 10] [--chunk 10]

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
import time
from pathlib import Path

import numpy as np

from lara.real_robot.perf.roscore import Roscore, node_config, write_config as write_yaml
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
    config = node_config(work, namespace, server_port, args.rate_hz, args.image_size, execute_steps=args.chunk,
                         prefetch_margin_s=MARGIN_S if mode == "async" else None)
    config["server"]["timeout_s"] = latency_ms / 1000.0 + 1.0
    config["safety"]["max_observation_age_s"] = latency_ms / 1000.0 + 0.3
    return write_yaml(work, namespace, config)


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
    with Roscore("lara_chunk_latency") as ros:
        sim_config = write_config(ros.work, args, "sync", "sim_topics", free_port(), latencies[0])
        ros.spawn("-m", "lara.real_robot.sim_franka", "--config", str(sim_config), "--backend", "kinematic",
                  "--image-size", str(args.image_size))
        results = []
        for latency in latencies:
            statuses, namespaces, children = {}, [], []  # children: this latency's servers and nodes
            for mode in MODES:
                namespace, port = f"lara_{mode}_{int(latency)}", free_port()
                children.append(ros.spawn("-c", SERVER, str(port), str(latency), str(args.chunk)))
                wait_for_port(port)
                config = write_config(ros.work, args, mode, namespace, port, latency)
                children.append(ros.spawn("-m", "lara.real_robot.ros_node", "--config", str(config),
                                          f"__name:=lara_policy_{namespace}"))
                statuses[mode] = ros.watch(namespace, "reach forward")
                namespaces.append(namespace)
            ros.ready(namespaces)
            time.sleep(0.5)
            ros.start(namespaces)
            time.sleep(args.seconds)
            ros.stop(namespaces)
            result = {"latency_ms": latency, "rate_hz": args.rate_hz, "chunk": args.chunk, "seconds": args.seconds,
                      "image": args.image_size, "prefetch_margin_s": MARGIN_S,
                      "load_average_1min": round(os.getloadavg()[0], 2),
                      **{mode: holds_summary(statuses[mode], args.rate_hz) for mode in MODES}}
            sync, prefetch = result["sync"]["holds_per_min"], result["async"]["holds_per_min"]
            result["async_over_sync"] = round(prefetch / sync, 3) if sync else None
            print(json.dumps(result), flush=True)
            results.append(result)
            ros.end(children)  # the sim stays
    first = results[0]
    print(f"chunk_latency hold_sync={first['sync']['holds_per_min']} hold_async={first['async']['holds_per_min']} "
          f"latency_ms={first['latency_ms']:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
