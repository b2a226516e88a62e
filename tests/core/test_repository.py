"""A fresh clone carries no trace of the machine it was written on (issue 40): no tracked symbolic link points
outside the repository, and no tracked text file of the project names a folder of that machine (the folder the
repository sits in, or a home folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("benchmarks", "docs", "lara", "adapters", "real_robot", "results")  # what ships, and the results committed beside it
HOMES = ("/root/", "/home/")


def git(*args: str) -> str:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def machine_folders() -> list[str]:
    """Absolute prefixes that name this machine's layout: the folder the repository sits in, and home folders."""
    parents = {str(Path(__file__).absolute().parents[3]), str(ROOT.parent)}  # as spelled, and through links
    return sorted({*(p.rstrip("/") + "/" for p in parents if p != "/"), *HOMES})


def test_no_tracked_symbolic_link_points_outside_the_repository():
    leaving = []
    for entry in git("ls-files", "-s", "-z").split("\0"):
        if not entry.startswith("120000 "):
            continue
        meta, path = entry.split("\t", 1)
        target = git("cat-file", "blob", meta.split()[1])  # the committed target, whatever is on this disk
        inside = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if os.path.isabs(target) or inside == ".." or inside.startswith("../"):
            leaving.append(f"{path} -> {target}")
    assert not leaving, f"tracked symbolic links leave the repository (a fresh clone has no such target): {leaving}"


def machine_paths_in(text: str, prefixes: list[str]) -> list[str]:
    """'line N: PREFIX' for each line of `text` that names one of `prefixes`."""
    return [f"line {number}: {named[0]}" for number, line in enumerate(text.splitlines(), 1)
            if (named := [prefix for prefix in prefixes if prefix in line])]


def test_no_tracked_file_names_a_folder_of_the_machine_it_was_written_on():
    prefixes = machine_folders()
    found = []
    for path in filter(None, git("ls-files", "-z", "--", *FOLDERS).split("\0")):
        file = ROOT / path
        if file.is_symlink() or not file.is_file():
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:  # a binary file (a plot, an HDF5 file)
            continue
        found += [f"{path}: {hit}" for hit in machine_paths_in(data.decode("utf-8", errors="replace"), prefixes)]
    assert not found, ("tracked files name folders of one machine; write paths relative to the project (data/..., "
                       "runs/...) or a placeholder (/path/to/...):\n" + "\n".join(found[:20]))


def test_the_check_catches_what_the_committed_results_held():
    prefixes = machine_folders()
    beside = f"{ROOT.parent}/data/ref_object64".replace("//", "/")
    record = f'{{\n "policy": "checkpoint:runs/ref/final/vla",\n "data": "[PosixPath(\'{beside}\')]"\n}}'
    lines = [hit.split(":")[0] for hit in machine_paths_in(record, prefixes)]
    assert lines == (["line 3"] if ROOT.parent != Path("/") else [])  # the data folder beside the repository
    assert machine_paths_in("python3.11 -m venv /root/lerobot-venv", prefixes) == ["line 1: /root/"]
    assert machine_paths_in('"data": ["data/ref_object64"], "out": "runs/health_1000.json"', prefixes) == []
