"""A small client for the policy server, for the robot PC: numpy, msgpack and websockets only.

    client = PolicyClient("gpu-box.local", 8000, timeout_s=0.5)
    reply = client.infer({"agentview_rgb": image, "ee_pos": pos, "instruction": "pick the cup"})
    chunk = reply["actions"]            # float32 [T, 7]

Failures raise `ServerUnavailable` (cannot connect, connection lost, no reply within `timeout_s`)
or `ServerError` (the server answered with an error, or with something that is not a valid reply).
After a failure the connection is dropped; the next `infer` reconnects, but not before a backoff
delay that doubles with each failed attempt (capped), so a control loop calling `infer` every
period never blocks on a dead server for more than one connect timeout per backoff window.
Python >= 3.8 syntax on purpose: robot PCs often run older interpreters (ROS Noetic: 3.8). Where
`lara` cannot be installed, copy `lara/serving/client.py` and `wire.py` into one folder and `import client`.
"""

import os
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

import numpy as np
from websockets.exceptions import WebSocketException
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

try:
    from lara.serving import wire
except ImportError:  # a standalone copy of client.py + wire.py on a robot PC that cannot install lara
    import wire


class ServerUnavailable(ConnectionError):
    """The server cannot be reached, dropped the connection, or did not answer in time."""


class ServerError(RuntimeError):
    """The server answered, but with an error or with a reply that is not an action chunk."""


class PolicyClient:
    def __init__(self, host: str, port: int, timeout_s: float = 1.0, connect_timeout_s: float = 1.0,
                 backoff_s: float = 0.2, max_backoff_s: float = 2.0, token: Optional[str] = None) -> None:
        self.host, self.port = host, int(port)
        self.token = token or os.environ.get("LARA_SERVE_TOKEN") or None  # `lara serve --token`, sent as openpi does
        self.uri = "ws://{}:{}".format(host, self.port)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.metadata: Optional[Dict[str, Any]] = None
        self._ws: Optional[ClientConnection] = None
        self._failures = 0
        self._next_attempt = 0.0  # time.monotonic() before which no reconnect is tried

    @property
    def connected(self) -> bool:
        """True while the connection is open (turns False as soon as the server side goes away)."""
        return self._ws is not None and self._ws.state is State.OPEN

    def connect(self) -> Dict[str, Any]:
        """Open the connection (respecting the backoff) and read the server's metadata."""
        now = time.monotonic()
        if now < self._next_attempt:
            raise ServerUnavailable("{}: not retrying for another {:.2f} s after {} failed attempt(s).".format(
                self.uri, self._next_attempt - now, self._failures))
        try:
            ws = connect(self.uri, open_timeout=self.connect_timeout_s, close_timeout=0.2,
                         compression=None, max_size=None, ping_interval=None,
                         additional_headers={"Authorization": "Api-Key " + self.token} if self.token else None)
        except (OSError, TimeoutError, WebSocketException) as exc:
            self._failed()
            raise ServerUnavailable("cannot connect to {}: {}".format(self.uri, exc)) from exc
        try:
            metadata = wire.unpackb(ws.recv(timeout=self.connect_timeout_s))
        except (OSError, TimeoutError, WebSocketException, wire.WireError) as exc:
            ws.close()
            self._failed()
            raise ServerUnavailable("{} did not send valid metadata on connect: {}".format(self.uri, exc)) from exc
        if not isinstance(metadata, dict):
            ws.close()
            self._failed()
            raise ServerError("{} sent metadata of type {}, expected a dict.".format(self.uri, type(metadata).__name__))
        self._ws, self.metadata, self._failures = ws, metadata, 0
        return metadata

    def infer(self, obs: Dict[str, Any]) -> Dict[str, Any]:
        """Send one observation, return the reply dict ({"actions": float32 [T, 7], "server_timing": ...})."""
        if self._ws is None:
            self.connect()
        payload = wire.packb(obs)
        try:
            self._ws.send(payload)
            frame = self._ws.recv(timeout=self.timeout_s)
        except (OSError, TimeoutError, WebSocketException) as exc:
            # a late reply would arrive on this connection later and be mistaken for the next one: drop it
            self.close()
            self._failed()
            reason = "no reply within {:.3f} s".format(self.timeout_s) if isinstance(exc, TimeoutError) else exc
            raise ServerUnavailable("{}: {}".format(self.uri, reason)) from exc
        if isinstance(frame, str):
            raise ServerError("policy server error: {}".format(frame))
        try:
            reply = wire.unpackb(frame)
        except wire.WireError as exc:
            raise ServerError("policy server sent an undecodable reply: {}".format(exc)) from exc
        return check_reply(reply)

    def health(self) -> bool:
        """True when `GET /healthz` answers 200 within the connect timeout."""
        url = "http://{}:{}/healthz".format(self.host, self.port)
        try:
            with urllib.request.urlopen(url, timeout=self.connect_timeout_s) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None

    def _failed(self) -> None:
        self._failures += 1
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (self._failures - 1))
        self._next_attempt = time.monotonic() + delay


def check_reply(reply: Any) -> Dict[str, Any]:
    """A reply must be a dict with finite float `actions` of shape [T, 7]; anything else is a ServerError."""
    if not isinstance(reply, dict) or "actions" not in reply:
        keys = sorted(map(str, reply)) if isinstance(reply, dict) else type(reply).__name__
        raise ServerError("policy server reply lacks `actions` (got {}).".format(keys))
    actions = reply["actions"]
    if not isinstance(actions, np.ndarray) or actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != 7:
        shape = list(actions.shape) if isinstance(actions, np.ndarray) else type(actions).__name__
        raise ServerError("policy server sent actions {}, expected a float array [T, 7].".format(shape))
    if actions.dtype.kind != "f" or not np.all(np.isfinite(actions)):
        raise ServerError("policy server sent non-finite or non-float actions ({}).".format(actions.dtype))
    return reply


class RemotePolicy:
    """A `lara.policy.Policy` whose model runs behind `lara serve`: evaluation and the simulators use a
    remote model exactly as a local one (`lara eval libero --policy ws://HOST:PORT`).

    Each episode's first observation carries `reset: True`, so the server resets the policy even when the
    instruction repeats. A slow model on a CPU server can take seconds per chunk: `timeout_s` is generous."""

    def __init__(self, host: str, port: int, timeout_s: float = 120.0, connect_timeout_s: float = 5.0,
                 token: Optional[str] = None) -> None:
        self.client = PolicyClient(host, port, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, token=token)
        self.instruction = ""
        self._new_episode = True

    def reset(self, instruction: str) -> None:
        self.instruction, self._new_episode = instruction, True

    def act(self, obs: Dict[str, Any]) -> np.ndarray:
        reply = self.client.infer(dict(obs, instruction=self.instruction, reset=self._new_episode))
        self._new_episode = False
        return reply["actions"]
