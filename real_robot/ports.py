"""Loopback port helpers shared by the real-robot benchmarks and tests."""

from __future__ import annotations

import argparse
import socket
import time


def tcp_port(text: str) -> int:
    """argparse type of a `--port` flag: a TCP port 1..65535 (0, "any free port", is refused: a client must know it)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1..65535, got {text!r}")
    return port


tcp_port.bounds = (int, 1, 65535, None)  # what tests/core/test_bad_numbers.py reads (lara.cli.integer's form)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")
