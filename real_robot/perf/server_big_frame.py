"""What a 200 MB frame costs `lara serve`: the server's peak resident memory before and after, and how soon it
answers.

    python -m lara.real_robot.perf.server_big_frame [--mb 200] [--server path/to/server.py]

`lara serve` runs in its own process on a tiny TokenVLA (built from a config, no download); one client
connects, reads the metadata, sends one frame of `--mb` megabytes and waits for the answer: a close with code
1009 (refused by the frame's header) or an error reply (read whole, then found not to be an observation).
A second connection then sends only the header of such a frame and 1 KB of it: how long until the
server answers shows whether it waits for (and reads) the payload before refusing. `--server` runs another copy of real_robot/server.py (e.g. an older one from git) in its place. Prints one JSON
line: the server's VmHWM before the frame and after the answer, the answer and its delay.
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

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lara.real_robot.ports import free_port
from lara.serving import wire


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def header_probe(port: int, mb: int, wait_s: float = 5.0) -> str:
    """Send a binary frame's header announcing `mb` MB and 1 KB of payload; what the server does within `wait_s`."""
    import struct

    with connect(f"ws://127.0.0.1:{port}", max_size=None, ping_interval=None) as ws:
        wire.unpackb(ws.recv())
        header = bytes([0x82, 0xFF]) + struct.pack(">Q", mb * 10**6) + b"\x00\x00\x00\x00"  # binary, masked
        start = time.monotonic()
        ws.socket.sendall(header + b"\x00" * 1024)
        try:
            ws.recv(timeout=wait_s)
            return "a reply"
        except TimeoutError:
            return f"no answer within {wait_s:.0f} s (waiting for the payload)"
        except ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else None} after {time.monotonic() - start:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="frame size in megabytes (10^6 bytes)")
    parser.add_argument("--server", type=Path, default=None, help="a server.py to run instead of `lara serve`")
    args = parser.parse_args(argv)
    from lara.vla.token_vla import tiny_token_vla

    with tempfile.TemporaryDirectory() as folder:
        tiny_token_vla().save_pretrained(folder)
        port = free_port()
        command = [sys.executable, str(args.server)] if args.server else [sys.executable, "-m", "lara.cli", "serve"]
        server = subprocess.Popen([*command, "--checkpoint", folder, "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    ws = connect(f"ws://127.0.0.1:{port}", max_size=None, open_timeout=2, ping_interval=None)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start")
                    time.sleep(0.2)
            with ws:
                wire.unpackb(ws.recv())
                before = peak_rss_mb(server.pid)
                frame = b"\x00" * (args.mb * 10**6)
                start = time.monotonic()
                try:
                    ws.send(frame)
                    reply = ws.recv(timeout=60)
                    answer = f"reply: {reply[:80] if isinstance(reply, str) else type(reply).__name__}"
                except ConnectionClosed as closed:
                    answer = f"closed: {closed.rcvd.code if closed.rcvd else None} {closed.rcvd.reason if closed.rcvd else ''}"
                delay = time.monotonic() - start
            time.sleep(0.5)
            after = peak_rss_mb(server.pid)
            header_only = header_probe(port, args.mb)
        finally:
            server.kill()
            server.wait(10)
    print(json.dumps({"frame_mb": args.mb, "server": str(args.server or "lara serve"), "peak_rss_mb_before":
                      round(before, 1), "peak_rss_mb_after": round(after, 1), "answer": answer,
                      "answered_after_s": round(delay, 3),
                      "header_and_1kb_only": header_only, "load_average": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
