"""Fixtures every test folder may use."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

# `make test` runs the `serial` tests alone after the parallel part and collects them from this folder only (collecting
# the whole tree costs a process ~10 s of imports): a serial test anywhere else would never run.
SERIAL_FOLDER = Path(__file__).parent / "real_robot"


@pytest.hookimpl(trylast=True)  # after pytest's own ordering by fixtures
def pytest_collection_modifyitems(config, items):
    misplaced = [item.nodeid for item in items
                 if item.get_closest_marker("serial") and SERIAL_FOLDER not in item.path.parents]
    if misplaced:
        raise pytest.UsageError(f"{misplaced[0]} is marked serial: serial tests belong under tests/real_robot, "
                                "the only folder `make test` collects them from")
    # Modules with a `slow` test first, each kept whole (its module fixtures are made once). pytest-xdist's worksteal
    # hands each worker half the tests by count and lets an idle one steal from the end of the other's queue: a
    # 100-s study test collected last ran alone for its last 80 s (2026-12-07); first, the short tests fill in around
    # it. The order within a module and between modules of one kind stays the collection's.
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def made_once(tmp_path_factory) -> Callable[[str, Callable[[Path], None], str], Path]:
    """`made_once(name, make, done)`: the folder `name` that `make(folder)` fills, made once per test session and
    shared by pytest-xdist's workers: the first worker to ask makes it, a second waits for it. It counts as made once
    the file `done` inside it exists (`make` writes it last). Tests only read such a folder."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: the workers' common folder

    def made(name: str, make: Callable[[Path], None], done: str) -> Path:
        folder = root / name
        with open(f"{folder}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (folder / done).is_file():
                make(folder)
        return folder

    return made


@pytest.fixture(scope="session")
def generated_demos(made_once) -> Callable[..., Path]:
    """`generated_demos(*args)`: the folder `lara data generate *args --out FOLDER` writes, made once per test session
    (`made_once`). Scripted LIBERO demonstrations cost 30-100 s each; tests that read the same ones need not make them
    again."""

    def generated(*args: str) -> Path:
        from lara.benchmarks.libero import generate

        def make(out: Path) -> None:
            assert generate.main([*args, "--out", str(out)]) == 0

        return made_once(f"generated-{hashlib.sha1(' '.join(args).encode()).hexdigest()[:12]}", make,
                         "generation.json")

    return generated
