"""Scripted LIBERO demonstrations generated once per session for the miniature studies."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def libero_object_demos(generated_demos) -> Path:
    """One expert episode of libero_object task 0 at 32 px (`lara data generate`), the schema the trainer reads:
    made once per session, whichever pytest-xdist worker asks first."""
    return generated_demos("--suite", "object", "--tasks", "0", "--episodes", "1", "--camera-size", "32")
