"""Fixtures for the real-robot tests: free ports, an in-process policy server, a real roscore."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # tiny_policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class ServerThread:
    """`serve_async` on a background event loop; `stop()` shuts it down."""

    def __init__(self, policy, metadata=None) -> None:
        from lara.real_robot.server import serve_async

        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._stop = None
        ready = threading.Event()

        async def main():
            self._stop = asyncio.Event()
            await serve_async(policy, "127.0.0.1", self.port, metadata, ready=ready, stop=self._stop)

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("policy server did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def server_factory():
    servers = []

    def make(policy, metadata=None):
        servers.append(ServerThread(policy, metadata))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
