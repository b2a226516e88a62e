"""Frame pairs with a known latent action: a square moved by a 2-D action on a textured background.

o_t shows a coloured square at a random place; o_{t+k} shows it moved by (dx, dy) pixels, the
ground-truth action. A LAM that learns real latent actions must encode (dx, dy) in z.
"""

from __future__ import annotations

import torch


TARGETS = {"the centre": (0.5, 0.5), "the top left": (0.0, 0.0), "the top right": (0.0, 1.0),
           "the bottom left": (1.0, 0.0), "the bottom right": (1.0, 1.0)}


def moving_object_pairs(n: int, size: int = 32, square: int = 6, max_shift: int = 5, seed: int = 0,
                        instructed: bool = False, towards_centre: bool = False, any_contrast: bool = False):
    """-> frames uint8 (n, 2, 3, size, size), actions float32 (n, 2) in [-1, 1] (shift / max_shift),
    instructions (n strings, or None).

    Shifts are random, or with `instructed` the move towards a target named in the instruction
    ("move the square to the top left"), at most `max_shift` pixels per axis: a policy can infer it
    from o_t and the instruction, while a language-free LAM must read it from (o_t, o_{t+k}).
    With `towards_centre` the square always moves towards the frame's centre: o_{t+k} follows from o_t
    alone, as in scripted robot demonstrations, so a reconstruction-only LAM can ignore its latent.
    With `any_contrast` half the pairs are inverted (a dark square on a light background): the pixel difference then holds the move times a random sign, which no linear probe reads.
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi = max_shift, size - square - max_shift
    start = torch.randint(lo, hi + 1, (n, 2), generator=g)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    instructions = None
    if towards_centre:
        shifts = ((size - square) // 2 - start).clamp(-max_shift, max_shift)
    if instructed:
        names = list(TARGETS)
        which = torch.randint(0, len(names), (n,), generator=g)
        goal = torch.tensor([TARGETS[names[i]] for i in which]) * (size - square)  # (n, 2) pixel (y, x)
        shifts = (goal.round().long() - start).clamp(-max_shift, max_shift)
        instructions = [f"move the square to {names[i]}" for i in which]
    background = torch.randint(0, 60, (n, 3, 1, 1), generator=g).expand(n, 3, size, size)
    colour = torch.randint(150, 256, (n, 3), generator=g)
    if any_contrast:
        light = torch.rand(n, generator=g) < 0.5  # a light background with a dark square
        background = torch.where(light[:, None, None, None], 255 - background, background)
        colour = torch.where(light[:, None], 255 - colour, colour)
    frames = background[:, None].repeat(1, 2, 1, 1, 1).clone()  # (n, 2, 3, S, S)
    for i in range(n):
        for t, (y, x) in enumerate((start[i], start[i] + shifts[i])):
            frames[i, t, :, y : y + square, x : x + square] = colour[i][:, None, None]
    return frames.to(torch.uint8), shifts.float() / max_shift, instructions
