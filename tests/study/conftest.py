"""Scripted LIBERO demonstrations and a miniature study, each made once per session for the study tests."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def libero_object_demos(generated_demos) -> Path:
    """One expert episode of libero_object task 1 at 32 px (`lara data generate`), the schema the trainer reads: made
    once per session, whichever pytest-xdist worker asks first, with the LIBERO generation tests' arguments
    (tests/libero/test_generate_and_evaluate.py OBJECT_TASK_1), so one generation serves both. The studies evaluate
    task 0: which task a miniature cell trained on does not matter to what they test."""
    return generated_demos("--suite", "object", "--tasks", "1", "--episodes", "1", "--camera-size", "32",
                           "--no-progress")


@pytest.fixture(scope="session")
def miniature_study(libero_object_demos, made_once) -> tuple[list[str], Path, str]:
    """A study of two cells (baseline and lara, seed 0; 40 tiny training steps, one LIBERO episode of 2 steps) run
    uninterrupted by the thread executor, both cells at once: its arguments less --out, its folder and what it
    printed. Made once per session (`made_once`); tests read it, or run it again (its cells are skipped)."""
    from lara.benchmarks.study import cli
    from test_study_end_to_end import STEPS, TINY

    argv = ["--preset", "posttrain_token_vla", "--data", str(libero_object_demos), "--suite", "object",
            "--tasks", "0", "--seeds", "0", "--trials", "1", "--max-steps", "2", "--workers", "2", "--set",
            *[o for o in TINY if not o.startswith(("train.steps", "train.checkpoint_every"))],
            f"train.steps={STEPS}", "train.checkpoint_every=4"]

    def make(folder: Path) -> None:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert cli.main([*argv, "--out", str(folder / "study")]) == 0
        (folder / "printed.txt").write_text(printed.getvalue())

    folder = made_once("miniature-study", make, "printed.txt")
    return argv, folder / "study", (folder / "printed.txt").read_text()
