"""Serve any `lara.policy.Policy` over openpi's websocket policy protocol.

    lara serve --checkpoint runs/my_policy --port 8000
    LARA_SERVE_TOKEN=secret lara serve --checkpoint runs/my_policy --host 0.0.0.0   # reachable from the robot PC

Protocol (openpi's `WebsocketPolicyServer`, so `openpi_client.WebsocketClientPolicy` works unchanged):
- on connect the server sends the metadata dict (msgpack-numpy, see `lara/serving/wire.py`);
- each binary frame from the client is an observation dict; the reply is
  {"actions": float32 [T, 7], "server_timing": {"infer_ms": ..., "prev_total_ms": ...}};
- a failure (undecodable frame, malformed observation, policy exception, bad policy output) is
  answered with a text frame holding the error, which openpi's client raises as RuntimeError.
  Unlike openpi, the connection stays open: the next observation is served normally;
- plain HTTP `GET /healthz` answers 200 "OK".

Exposure: the server listens on 127.0.0.1 unless `--host` says otherwise (0.0.0.0 is warned about: anyone who
reaches the port drives the policy). With a shared token (`--token` or LARA_SERVE_TOKEN) a connection must send
openpi's header `Authorization: Api-Key TOKEN` (`WebsocketClientPolicy(api_key=TOKEN)`, our PolicyClient reads
LARA_SERVE_TOKEN) or is refused with 401 before any frame; without one, openpi's client connects as it is. A
frame larger than `max_frame_bytes(image_size)` (two camera images of up to 4x the announced side, plus room for
the state and the instruction) is refused by its header, with close code 1009, before its payload is read.
The metadata names the checkpoint's folder, never its path on the server's disk.

Observation keys are those of `lara.policy` (`agentview_rgb` uint8 [H, W, 3] required, the others
optional), or those openpi's LIBERO example client (examples/libero/main.py) sends: `observation/image`
and `observation/wrist_image` (uint8, upright, 224 px there), `observation/state` float [8] = end-effector
position (3), axis-angle (3) and gripper qpos (2), and `prompt` for `instruction`. With an announced `image_size`,
a camera image smaller than it on either side is refused, naming both sizes (larger ones are resized by the policy).

Each connection drives a policy of its own (`lara.policy.session_policy`: the same weights, its own instruction
and episode state), so clients served at once (several robots, `lara eval --policy ws://` with several workers)
never see each other's instruction. It is reset when the connection sends its first observation, when the
instruction changes, when the observation has `reset: True`, and after openpi's `episode_start` control frame
(`{"__ctrl__": ...}` frames are acknowledged with `{"__ack__": ...}` as openpi's server does; its LIBERO client
sends one before and after each episode). Requests of all connections run one at a time on one worker thread.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import http
import ipaddress
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, ServerConnection
from websockets.asyncio.server import serve as _ws_serve

from lara.errors import InputError, MissingPath
from lara.policy import ACTION_DIM, Policy, policy_image_size, session_policy
from lara.vla.backbones import find_vla_dir
from lara.serving import wire
# openpi's LIBERO client keys -> ours; its state is the concatenation of these (examples/libero/main.py). It sends
# images of IMAGE_SIZE px whatever the policy: the least side a frame may carry
from lara.serving.openpi import IMAGE_SIZE as OPENPI_IMAGE_SIZE
from lara.serving.openpi import IMAGES as OPENPI_IMAGES
from lara.serving.openpi import STATE as OPENPI_STATE
from lara.serving.openpi import STATE_PARTS as OPENPI_STATE_PARTS
from lara.real_robot.ports import tcp_port

logger = logging.getLogger(__name__)

# key -> (shape with None = any size, dtype kind: "u8" = uint8 image, "f" = real numbers)
OBSERVATION_SPEC = {
    "agentview_rgb": ((None, None, 3), "u8"),
    "eye_in_hand_rgb": ((None, None, 3), "u8"),
    "ee_pos": ((3,), "f"),
    "ee_ori": ((3,), "f"),
    "gripper_qpos": ((2,), "f"),
    "joint_qpos": ((None,), "f"),  # any arm: 7 joints on a Franka, 6 on the WidowX of SIMPLER
}
REQUIRED_KEYS = ("agentview_rgb",)
IMAGE_KEYS = tuple(key for key, (_, kind) in OBSERVATION_SPEC.items() if kind == "u8")
CONTROL_KEY = "__ctrl__"  # openpi's episode_start / episode_end frames
TOKEN_ENV, TOKEN_SCHEME = "LARA_SERVE_TOKEN", "Api-Key"  # openpi's client sends `Authorization: Api-Key <key>`
FRAME_CAMERAS, FRAME_SIDE_FACTOR, FRAME_EXTRA_BYTES = 2, 4, 1 << 20


def max_frame_bytes(image_size: int | None) -> int:
    """The largest observation frame served: two uint8 RGB images of up to FRAME_SIDE_FACTOR x the announced side
    (a camera may send more than the policy reads; the policy resizes), plus 1 MiB for state, instruction and
    msgpack framing. 224 px announced: 5.8 MB; a 200 MB frame is refused unread."""
    side = FRAME_SIDE_FACTOR * max(image_size or 0, OPENPI_IMAGE_SIZE)
    return FRAME_CAMERAS * side * side * 3 + FRAME_EXTRA_BYTES


class ObservationError(ValueError):
    """An observation that does not match `OBSERVATION_SPEC`."""


def _from_openpi(obs: dict) -> dict:
    """openpi's LIBERO observation keys renamed to ours (and its 8-D state split); sending both spellings of
    one quantity is refused rather than silently resolved."""
    out = dict(obs)
    for theirs, ours in OPENPI_IMAGES.items():
        if theirs in out:
            if ours in out:
                raise ObservationError(f"observation has both `{theirs}` (openpi) and `{ours}`; send one of them.")
            out[ours] = out.pop(theirs)
    if OPENPI_STATE in out:
        state = out.pop(OPENPI_STATE)
        width = sum(n for _, n in OPENPI_STATE_PARTS)
        if not isinstance(state, np.ndarray) or state.shape != (width,):
            got = list(state.shape) if isinstance(state, np.ndarray) else type(state).__name__
            raise ObservationError(f"`{OPENPI_STATE}` must be a numpy array of shape [{width}] (end-effector position 3, "
                                   f"axis-angle 3, gripper qpos 2, as openpi's LIBERO client sends), got {got}.")
        start = 0
        for key, n in OPENPI_STATE_PARTS:
            if key in out:
                raise ObservationError(f"observation has both `{OPENPI_STATE}` (openpi) and `{key}`; send one of them.")
            out[key], start = state[start:start + n], start + n
    return out


def check_observation(obs: Any) -> dict:
    """Validate one decoded observation (ours or openpi's LIBERO keys); returns it in our keys, with
    `instruction` filled from `prompt` if needed."""
    if not isinstance(obs, dict):
        raise ObservationError(f"expected an observation dict, got {type(obs).__name__}.")
    obs = _from_openpi(obs)
    for key in REQUIRED_KEYS:
        if key not in obs:
            theirs = next(t for t, o in OPENPI_IMAGES.items() if o == key)
            raise ObservationError(f"observation lacks `{key}` (openpi: `{theirs}`); got keys {sorted(map(str, obs))}.")
    for key, (shape, kind) in OBSERVATION_SPEC.items():
        if key not in obs:
            continue
        value = obs[key]
        if not isinstance(value, np.ndarray):
            raise ObservationError(f"`{key}` must be a numpy array, got {type(value).__name__}.")
        shape_ok = value.ndim == len(shape) and all(e is None or e == g for e, g in zip(shape, value.shape))
        if not shape_ok:
            expected = "[" + ", ".join("*" if e is None else str(e) for e in shape) + "]"
            raise ObservationError(f"`{key}` must have shape {expected}, got {list(value.shape)}.")
        if kind == "u8" and value.dtype != np.uint8:
            raise ObservationError(f"`{key}` must be uint8 RGB, got dtype {value.dtype}.")
        if kind == "f":
            if value.dtype.kind not in "fiu" or not np.all(np.isfinite(value)):
                raise ObservationError(f"`{key}` must hold finite real numbers, got {value.dtype} {value}.")
    instruction = obs.get("instruction", obs.get("prompt", ""))
    if not isinstance(instruction, str):
        raise ObservationError(f"`instruction` must be a string, got {type(instruction).__name__}.")
    return {**obs, "instruction": instruction}


def check_actions(actions: Any) -> np.ndarray:
    """The policy's output must be a finite float [T, 7] chunk; returns it as float32."""
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != ACTION_DIM:
        raise ValueError(f"policy returned actions of shape {list(actions.shape)}; expected [T, {ACTION_DIM}], T >= 1.")
    if not np.all(np.isfinite(actions)):
        raise ValueError("policy returned NaN or inf actions.")
    return actions.astype(np.float32)


class _Session:
    """One client connection: its own policy and the instruction that policy was last reset with."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.instruction: str | None = None


def check_image_sizes(obs: dict, cameras: tuple[str, ...], image_size: int) -> None:
    """Refuse a camera image the policy reads that is smaller than its `image_size` input on either side."""
    for key in cameras:
        image = obs.get(key)
        if image is not None and min(image.shape[:2]) < image_size:
            raise ObservationError(f"`{key}` is {image.shape[0]}x{image.shape[1]} px, smaller than the policy's "
                                   f"{image_size}x{image_size} input; send images of at least {image_size} px a side "
                                   "(larger ones are resized).")


class PolicyServer:
    """Runs `act` on one worker thread (one model, one request at a time) so `/healthz` answers while a slow model
    computes; each connection gets its own `session_policy`, so clients never share an instruction or episode."""

    def __init__(self, policy: Policy, metadata: dict | None = None) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"expected a lara.policy.Policy (reset + act), got {type(policy).__name__}.")
        self.policy = policy
        self.metadata = {"protocol": "openpi-websocket", "action_dim": ACTION_DIM,
                         "policy": type(policy).__name__, **(metadata or {})}
        image_size = self.metadata.get("image_size")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"metadata `image_size` must be the policy's input side in pixels (an int >= 1), "
                             f"got {image_size!r}.")
        self.image_size: int | None = image_size
        self.cameras = tuple(getattr(policy, "cameras", None) or IMAGE_KEYS)  # the images the policy reads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")

    def session(self) -> _Session:
        """The state of a new connection: a policy of its own, not reset yet."""
        return _Session(session_policy(self.policy))

    def infer(self, session: _Session, obs: Any) -> dict:
        obs = check_observation(obs)
        if self.image_size is not None:
            check_image_sizes(obs, self.cameras, self.image_size)
        if obs.get("reset", False) or obs["instruction"] != session.instruction:
            session.policy.reset(obs["instruction"])
            session.instruction = obs["instruction"]
        return {"actions": check_actions(session.policy.act(obs))}

    def control(self, session: _Session, message: dict) -> dict:
        """openpi's control frames (its LIBERO client sends `episode_start` / `episode_end` around each
        episode): acknowledged as openpi's server does; an episode start resets the policy on the next
        observation even when the instruction is the same."""
        kind = message[CONTROL_KEY]
        if kind == "episode_start":
            session.instruction = None
        return {"__ack__": kind if kind in ("episode_start", "episode_end") else "ignored"}

    async def handle(self, websocket: ServerConnection) -> None:
        session = self.session()
        loop = asyncio.get_running_loop()
        await websocket.send(wire.packb(self.metadata))
        prev_total_ms = None
        while True:
            try:
                frame = await websocket.recv()
            except websockets.ConnectionClosed:
                return
            start = time.monotonic()
            try:
                obs = wire.unpackb(frame)
                if isinstance(obs, dict) and CONTROL_KEY in obs:  # episode framing, not an observation
                    await websocket.send(wire.packb(self.control(session, obs)))
                    continue
                infer_start = time.monotonic()
                reply = await loop.run_in_executor(self._executor, self.infer, session, obs)
                timing = {"infer_ms": (time.monotonic() - infer_start) * 1000.0}
                if prev_total_ms is not None:
                    timing["prev_total_ms"] = prev_total_ms
                reply["server_timing"] = timing
                payload: bytes | str = wire.packb(reply)
            except Exception as exc:  # any failure goes back to the client; the server keeps serving
                logger.warning("request failed: %s: %s", type(exc).__name__, exc)
                payload = f"{type(exc).__name__}: {exc}"
            try:
                await websocket.send(payload)
            except websockets.ConnectionClosed:
                return
            prev_total_ms = (time.monotonic() - start) * 1000.0


def _gate(token: str | None):
    """The HTTP step before the websocket upgrade: `/healthz` answers; with a token, a connection without
    `Authorization: Api-Key <token>` is refused with 401 before any frame is read."""

    def process_request(connection: ServerConnection, request: Request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"{TOKEN_SCHEME} {token}".encode()):
                logger.warning("refused a connection from %s: %s", connection.remote_address,
                               "wrong token" if given else "no token")
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, f"this server needs a token: send "
                                          f"'Authorization: {TOKEN_SCHEME} <token>' (openpi: api_key=<token>)\n")
        return None

    return process_request


async def serve_async(policy: Policy, host: str, port: int, metadata: dict | None = None,
                      ready: threading.Event | None = None, stop: asyncio.Event | None = None,
                      token: str | None = None) -> None:
    """Serve until `stop` is set (or forever); `ready` is set once the socket listens. Frames past
    `max_frame_bytes` of the metadata's `image_size` are refused; with `token`, connections must present it."""
    server = PolicyServer(policy, metadata)
    limit = max_frame_bytes(server.metadata.get("image_size"))
    async with _ws_serve(server.handle, host, port, compression=None, max_size=limit,
                         process_request=_gate(token), ping_interval=None) as ws_server:
        logger.info("serving %s on ws://%s:%d", type(policy).__name__, host, port)
        if ready is not None:
            ready.set()
        if stop is None:
            await ws_server.serve_forever()
        else:
            await stop.wait()


def serve(policy: Policy, host: str = "127.0.0.1", port: int = 8000, metadata: dict | None = None,
          token: str | None = None) -> None:
    """Block serving `policy` on ws://host:port (Ctrl-C stops)."""
    asyncio.run(serve_async(policy, host, port, metadata, token=token))


def public_name(vla_dir: Path) -> str:
    """What the metadata calls a checkpoint: its folder from the run's name down (RUN/final/vla,
    RUN/checkpoints/step_N/vla) or its own name; a client has no business with the server's paths."""
    parts = vla_dir.resolve().parts
    if len(parts) >= 3 and parts[-2:] == ("final", "vla"):
        return "/".join(parts[-3:])
    if len(parts) >= 4 and parts[-1] == "vla" and parts[-3] == "checkpoints":
        return "/".join(parts[-4:])
    return vla_dir.resolve().name


def check_address(host: str, port: int) -> None:
    """Refuse, before the model loads, an address the server could not listen on (in use, not this machine's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise InputError(f"--host {host}: not an address of this machine ({error.strerror}); give 127.0.0.1, "
                         "0.0.0.0 (every interface) or one of this machine's addresses") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise InputError(f"--port {port}: {host}:{port} is in use by another process; give another --port "
                                 "or stop the one listening there") from None
            raise InputError(f"--host {host} --port {port}: cannot listen there ({error.strerror}); give another "
                             "--host or --port (ports below 1024 need root)") from None


def _warn_if_exposed(host: str, token: str | None) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        logger.warning("listening on %s: anyone who can reach this machine can drive the policy%s", host,
                       "" if token else f"; set --token (or {TOKEN_ENV}) so that only your clients can")


def build_parser():
    from lara.cli import ArgumentParser  # a bad flag: one line and exit 2, as every lara command

    parser = ArgumentParser(prog="lara serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="the exported VLA (RUN/final/vla), or the run folder RUN, RUN/final or RUN/checkpoints/step_N "
                             "(the VLA inside is picked)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: this machine only; 0.0.0.0 = every interface, warned)")
    parser.add_argument("--port", type=tcp_port, default=8000, help="TCP port, 1..65535 (default: 8000)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"a shared secret every connection must send (openpi: api_key=...; default ${TOKEN_ENV}; "
                             "none: any client connects)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_address(args.host, args.port)
    _warn_if_exposed(args.host, args.token)
    try:
        checkpoint = find_vla_dir(args.checkpoint)
    except MissingPath as error:  # one line from the dispatcher, exit 2
        raise MissingPath(f"--checkpoint {error}") from error
    if checkpoint != Path(args.checkpoint):
        logger.info("serving the VLA in %s", checkpoint)
    from lara.vla.backbones import load_policy  # the model stack is needed only when a checkpoint is served

    policy = load_policy(checkpoint)
    # image_size is announced: evaluators render at this size
    metadata = {"checkpoint": public_name(checkpoint), "image_size": policy_image_size(f"checkpoint:{checkpoint}")}
    try:
        serve(policy, args.host, args.port, metadata=metadata, token=args.token)
    except KeyboardInterrupt:
        pass
    except OSError as error:  # the port was taken between the check and the start
        raise InputError(f"--host {args.host} --port {args.port}: cannot listen there ({error}); give another "
                         "--port") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
