"""Frame pairs with a known latent action: a square moved by a 2-D action on a textured background.

o_t shows a coloured square at a random place; o_{t+k} shows it moved by (dx, dy) pixels, the
ground-truth action. A LAM that learns real latent actions must encode (dx, dy) in z.
"""

from __future__ import annotations

import torch


def moving_object_pairs(n: int, size: int = 32, square: int = 6, max_shift: int = 5, seed: int = 0,
                        toward_centre: bool = False):
    """-> frames uint8 (n, 2, 3, size, size), actions float32 (n, 2) in [-1, 1] (shift / max_shift).

    Shifts are random, or with `toward_centre` the move a policy should make from o_t alone:
    towards the centre of the frame, at most `max_shift` pixels per axis.
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi = max_shift, size - square - max_shift
    start = torch.randint(lo, hi + 1, (n, 2), generator=g)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    if toward_centre:
        shifts = ((size - square) // 2 - start).clamp(-max_shift, max_shift)
    background = torch.randint(0, 60, (n, 3, 1, 1), generator=g).expand(n, 3, size, size)
    colour = torch.randint(150, 256, (n, 3), generator=g)
    frames = background[:, None].repeat(1, 2, 1, 1, 1).clone()  # (n, 2, 3, S, S)
    for i in range(n):
        for t, (y, x) in enumerate((start[i], start[i] + shifts[i])):
            frames[i, t, :, y : y + square, x : x + square] = colour[i][:, None, None]
    return frames.to(torch.uint8), shifts.float() / max_shift
