"""Checkpoint folders that are either complete or invisible.

    RUN/checkpoints/step_000500/
        vla/ lara/            the exports (VLA in its native save_pretrained format, the LARA artifact)
        state/                what exact resume needs: trainable weights + buffers, optimizer, scheduler,
                              EMA, every process's RNG states
        trainer_state.json    step, micro-step (= data position), world size, batch size, config
        manifest.json         sha256 and size of every file above; written last

A checkpoint is written under `step_000500.tmp`, the manifest is written last, and the folder is renamed
into place, so a crash mid-write never leaves a half-written checkpoint that looks like the newest.
On resume the newest folder whose manifest matches its files wins; a corrupt one is reported and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

MANIFEST = "manifest.json"
PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


def staging_dir(root: Path, step: int) -> Path:
    return root / f"{checkpoint_name(step)}.tmp"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path, leave_out: tuple[str, ...] = ()) -> None:
    """fsync every file of `folder`, then record their sha256 and sizes in its manifest.json (fsynced too).
    `leave_out`: names of top-level files that change after the export (RUN/final's model card)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                   and str(p.relative_to(folder)) not in leave_out)
    for path in files:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    manifest = {str(p.relative_to(folder)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}
    with open(folder / MANIFEST, "w") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def seal(staging: Path) -> Path:
    """Write the manifest of `staging`, fsync it, and rename it to its final name (atomic on one filesystem)."""
    write_manifest(staging)
    final = staging.with_suffix("")
    if final.exists():  # the same step written again (a resumed run re-reaching it): replace it
        shutil.rmtree(final)
    os.replace(staging, final)
    _fsync_dir(final.parent)
    return final


def verify(checkpoint: Path) -> str | None:
    """None if `checkpoint` is intact, else the reason it is not."""
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        return "no manifest.json (the write did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        return f"manifest.json is not valid JSON ({error})"
    for name, entry in manifest.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
        if _sha256(path) != entry["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    return None


def checkpoints(root: Path) -> list[Path]:
    """Sealed checkpoint folders under `root`, newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.suffix == ""]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)


def latest_intact(root: Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt newer ones are reported with their reason and skipped."""
    for path in checkpoints(root):
        reason = verify(path)
        if reason is None:
            return path
        warnings.warn(f"checkpoint {path} is corrupt ({reason}); falling back to the previous one", stacklevel=2)
    return None


def prune(root: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints, and stale staging folders of interrupted writes."""
    for path in checkpoints(root)[keep:]:
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f"{PREFIX}*.tmp"):
        shutil.rmtree(path, ignore_errors=True)
