"""A real, small `lara.policy.Policy` for the serving tests: a torch MLP from a downscaled image and
the end-effector state to a chunk of actions. Run as a script it serves itself:

    python tests/real_robot/tiny_policy.py PORT [--scale S] [--delay-ms D]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lara.policy import ACTION_DIM


class TinyMLPPolicy:
    """8x8 grey thumbnail + ee_pos -> tanh MLP -> [horizon, 7]; `scale` multiplies the output so tests
    can ask for deliberately huge (unsafe) actions."""

    def __init__(self, horizon: int = 4, scale: float = 1.0, delay_ms: float = 0.0, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.horizon, self.scale, self.delay_ms = horizon, scale, delay_ms
        self.net = torch.nn.Sequential(torch.nn.Linear(64 + 3, 32), torch.nn.Tanh(),
                                       torch.nn.Linear(32, horizon * ACTION_DIM), torch.nn.Tanh())
        self.instructions: list[str] = []

    def reset(self, instruction: str) -> None:
        self.instructions.append(instruction)

    @torch.no_grad()
    def act(self, obs: dict) -> np.ndarray:
        image = torch.from_numpy(np.array(obs["agentview_rgb"], dtype=np.float32)).mean(-1)  # (H, W)
        thumb = torch.nn.functional.adaptive_avg_pool2d(image[None, None], 8).flatten() / 255.0  # (64,)
        ee_pos = torch.from_numpy(np.asarray(obs.get("ee_pos", np.zeros(3)), dtype=np.float32))
        out = self.net(torch.cat([thumb, ee_pos])).view(self.horizon, ACTION_DIM)  # (T, 7)
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000.0)
        return (self.scale * out).numpy().astype(np.float32)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from lara.real_robot.server import serve

    serve(TinyMLPPolicy(scale=args.scale, delay_ms=args.delay_ms), "127.0.0.1", args.port,
          metadata={"name": "tiny-mlp"})
