"""Round-trip overhead of the policy server, beyond model time, on loopback.

    python -m lara.real_robot.perf.server_latency [--requests 2000] [--image-size 224] [--client ours|openpi]

A zero-work policy is served (`act` returns a constant [10, 7] chunk) so that what is measured is the
protocol: msgpack-numpy encoding of a uint8 image plus state, the websocket round trip, decoding, the
server's validation and worker-thread hop. Overhead per request = client round trip - the server's own
`server_timing.infer_ms` (the model's time). Prints p50 / p90 / p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time

import numpy as np

from lara.real_robot.server import serve_async


class ConstantPolicy:
    def reset(self, instruction: str) -> None:
        pass

    def act(self, obs: dict) -> np.ndarray:
        return np.zeros((10, 7), np.float32)


def _serve_in_thread(port: int) -> None:
    ready = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(serve_async(ConstantPolicy(), "127.0.0.1", port, ready=ready)),
                              daemon=True)
    thread.start()
    if not ready.wait(10):
        raise TimeoutError("server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests (after 100 warm-up)")
    parser.add_argument("--image-size", type=int, default=224, help="square uint8 RGB image side")
    parser.add_argument("--client", choices=("ours", "openpi"), default="ours", help="which client sends")
    args = parser.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _serve_in_thread(port)
    if args.client == "openpi":
        from openpi_client.websocket_client_policy import WebsocketClientPolicy

        client = WebsocketClientPolicy("127.0.0.1", port)
    else:
        from lara.serving.client import PolicyClient

        client = PolicyClient("127.0.0.1", port, timeout_s=5.0)
    rng = np.random.default_rng(0)
    obs = {"agentview_rgb": rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8),
           "ee_pos": rng.normal(size=3), "ee_ori": rng.normal(size=3), "gripper_qpos": rng.normal(size=2),
           "joint_qpos": rng.normal(size=7), "instruction": "put the bowl on the plate"}
    totals, overheads = [], []
    for i in range(100 + args.requests):
        start = time.perf_counter()
        reply = client.infer(obs)
        total_ms = (time.perf_counter() - start) * 1000.0
        if i >= 100:
            totals.append(total_ms)
            overheads.append(total_ms - reply["server_timing"]["infer_ms"])
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 3)  # noqa: E731
    print(json.dumps({
        "client": args.client, "image": [args.image_size, args.image_size, 3], "requests": args.requests,
        "overhead_ms": {"p50": pct(overheads, 50), "p90": pct(overheads, 90), "p99": pct(overheads, 99)},
        "round_trip_ms": {"p50": pct(totals, 50), "p99": pct(totals, 99)},
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
