"""A misbehaving policy server for the fault tests: valid metadata, then garbage bytes as every reply.

    python tests/real_robot/bad_server.py PORT
"""

import asyncio
import sys

from websockets.asyncio.server import serve

from lara.real_robot import wire


async def handler(websocket):
    await websocket.send(wire.packb({"name": "garbage"}))
    async for _ in websocket:
        await websocket.send(b"\xc1\x00 this is not msgpack")


async def main(port):
    async with serve(handler, "127.0.0.1", port, max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
