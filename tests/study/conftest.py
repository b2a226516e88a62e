"""Scripted LIBERO demonstrations generated once per session for the miniature studies."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def libero_object_demos(tmp_path_factory) -> Path:
    """One expert episode of libero_object task 0 at 32 px (`lara data generate`), the schema the trainer reads."""
    from lara.benchmarks.libero import generate

    out = tmp_path_factory.mktemp("libero_object_demos")
    assert generate.main(["--suite", "object", "--tasks", "0", "--episodes", "1",
                          "--camera-size", "32", "--out", str(out)]) == 0
    return out
