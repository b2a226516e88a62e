"""Helpers for the real-robot tests. A unique module name, so it never collides with another folder's
conftest module when the whole suite runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

from lara.real_robot.ports import free_port, wait_for_port  # noqa: F401  (re-exported for the tests)

HERE = Path(__file__).parent
REPO = HERE.parent.parent


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


class Processes:
    """Processes started by one test; each is stopped by its own id at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir, self.procs = log_dir, {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.procs[name] = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=REPO, env=env)
        return self.procs[name]

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def node_config(path: Path, prefix: str, server_port: int, server: dict | None = None, **overrides) -> Path:
    """A node config with every topic under `prefix` (tests never hear each other's nodes)."""
    import yaml

    from lara.real_robot.config import DEFAULT_CONFIG

    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["topics"] = {k: (f"/{prefix}{v}" if isinstance(v, str) and v.startswith("/") else v)
                      for k, v in data["topics"].items()}
    data["topics"]["namespace"] = f"{prefix}/lara"
    data["server"].update(port=server_port, timeout_s=0.3, connect_timeout_s=0.3, backoff_s=0.1, max_backoff_s=0.3)
    data["server"].update(server or {})
    data.update(image_size=[96, 96], episodes_dir=str(path.parent / "episodes"), **overrides)
    path.write_text(yaml.safe_dump(data))
    return path
