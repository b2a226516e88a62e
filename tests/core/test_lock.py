"""The lock (requirements/*.txt, scripts/lock.py): the venv the tests run in is the one the lock describes."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = "lock-tf440.txt" if metadata.version("transformers").startswith("4.") else "lock.txt"


def check(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lock.py"), "check", str(lock)],
                          capture_output=True, text=True)


@pytest.mark.tf440
def test_this_venv_is_the_lock():
    if not Path(sys.prefix).name.startswith(".venv") or Path(sys.prefix).parent != ROOT:
        pytest.skip(f"{sys.prefix} is not one of this checkout's venvs (make test builds them from the lock)")
    result = check(ROOT / "requirements" / LOCK)
    assert result.returncode == 0, result.stderr


@pytest.mark.tf440
def test_a_version_off_the_lock_is_named(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# a lock\npytest==0.0.1\nno-such-package==1.0\n")
    result = check(lock)
    assert result.returncode == 1
    assert f"pytest {metadata.version('pytest')} (lock 0.0.1)" in result.stderr
    assert "no-such-package - (lock 1.0)" in result.stderr  # locked but not installed
    assert "numpy" in result.stderr  # installed but not locked


def test_a_malformed_lock_line_is_one_line(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy>=1\n")
    result = check(lock)
    assert result.returncode == 1 and "lock.txt:1: expected `name==version`, got 'numpy>=1'" in result.stderr
