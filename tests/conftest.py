"""Fixtures every test folder may use."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def generated_demos(tmp_path_factory) -> Callable[..., Path]:
    """`generated_demos(*args)`: the folder `lara data generate *args --out FOLDER` writes, made once per test session
    and shared by pytest-xdist's workers (a second worker waits for the first's). Scripted LIBERO demonstrations
    cost 30-100 s each; tests that read the same ones need not make them again. Tests only read the folder."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: the workers' common folder

    def generated(*args: str) -> Path:
        from lara.benchmarks.libero import generate

        out = root / f"generated-{hashlib.sha1(' '.join(args).encode()).hexdigest()[:12]}"
        with open(f"{out}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (out / "generation.json").is_file():
                assert generate.main([*args, "--out", str(out)]) == 0
        return out

    return generated
