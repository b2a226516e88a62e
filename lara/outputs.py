"""What a command writes: nothing of the user's is replaced without `--overwrite`, a place it cannot write is one
line before any work, and an interrupted write's staging file is cleared by the next write of the same output.

    check_new(outputs, overwrite=args.overwrite)  # an OUT file or folder that exists: refused, naming --overwrite
    writable(out, "--out")                          # created, and proven writable, before minutes of rollouts
    with replacing(target) as staging:              # write `staging`; it becomes `target` when the block ends
        torch.save(state, staging)                  # (fsynced, moved atomically), or is removed when it raises
    write_text(out / "results.json", text)          # the same for a text file; save_figure(fig, path) for a PNG

Every temp-file-then-rename write of lara, its recipes and benchmarks goes through here: `replacing` for a file
written in one block, `new_staging_file` + `publish` for one that lives across calls (the HDF5 writer),
`staging_folder` + `publish_folder` for a folder. Staging names (`.NAME.<pid>.<random>.tmp` beside the target)
carry the writer's process id, so a staging file is known stale when its process is gone: the next write of the
same target removes those (and only those: another target's, or a live writer's, stay). A leaf module (pure
Python, importing only `lara.errors`): the data readers and writers import it without import cycles, and the HDF5
writer under the system interpreter.

What a record names (results.json, a run's recipe.json, a generation.json) is a path as the user gave it when
relative, and relative to the project (the working folder) when absolute: `recorded(path)`, `recorded_paths(tree)`,
`settings(args)`. A committed record then names no machine's folders and still leads to its files from the project.
An output path that is itself a symbolic link (to something or to nothing), or that sits under a link to nothing,
is refused on one line saying so (`check_link`, which `check_new` and `writable` run): writing through it would put
the output somewhere else than the user named (or fail with "File exists", which names the wrong cause). So is a
name longer than the filesystem allows, before any work. A write that runs out of disk (`disk_full`) ends on one
line naming the output and "no space left on the device" (`writing`, which `replacing` and the big writers run;
`lara.errors.run_command` names any other ENOSPC or ENAMETOOLONG on one line too).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from lara.errors import InputError, UserError

OVERWRITE_HELP = "replace the outputs of an earlier run (default: refuse to replace anything)"


def _project() -> str:
    """The working folder, spelled as the shell gave it ($PWD, through symbolic links) when that is the same one."""
    here = os.getcwd()
    shown = os.environ.get("PWD", "")
    try:
        return shown if os.path.isabs(shown) and os.path.samefile(shown, here) else here
    except OSError:
        return here


def recorded(path: str | os.PathLike) -> str:
    """How a record names `path`: as given when relative; when absolute, relative to the project (the working
    folder; `../data/x` for a folder beside it), never the machine's absolute layout."""
    text = os.fspath(path)
    return os.path.relpath(text, _project()) if os.path.isabs(text) else text


def recorded_paths(value):
    """`value` (a JSON-like tree of dicts, lists and values) with each path in it as `recorded` names it: path
    objects, and strings that are absolute paths. Tuples become lists, as JSON writes them."""
    if isinstance(value, dict):
        return {key: recorded_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [recorded_paths(item) for item in value]
    if isinstance(value, os.PathLike) or (isinstance(value, str) and os.path.isabs(value)):
        return recorded(value)
    return value


def settings(args) -> dict:
    """A command's parsed arguments (an argparse Namespace) as a record: JSON values, paths as `recorded` names
    them, anything else as its text."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if value is None or isinstance(value, (bool, int, float, str, os.PathLike)):
            return recorded_paths(value)
        return str(value)

    return {key: plain(value) for key, value in vars(args).items()}


def dangling_link(path: str | os.PathLike) -> tuple[Path, str] | None:
    """The first of `path`'s folders (outermost first), or `path` itself, that is a symbolic link to nothing, and
    the target it names; None when there is none."""
    path = Path(path)
    for part in [*reversed(path.parents), path]:
        if part.is_symlink() and not part.exists():
            return part, os.readlink(part)
    return None


def check_link(path: str | os.PathLike, flag: str | None = None, *, folder: bool = False) -> None:
    """Refuse an output that is a symbolic link (live or dangling), or that sits under a link to nothing, on one
    line naming the link and its target; and a name longer than the filesystem allows (`check_name_lengths`).
    `folder`: `path` itself is a folder to write in. Folders above the output that link to a real folder (a `data`
    link to a bigger disk) are the user's layout and stay allowed."""
    path = Path(path)
    given = f"{flag} {path}" if flag else f"{path}"
    check_name_lengths(path, given)  # first: looking a too long name up fails with ENAMETOOLONG
    found = dangling_link(path)
    if found is not None:
        link, target = found
        kind = "a folder" if folder or link != path else "a path"
        raise InputError(f"{given}: {link} is a symbolic link to {kind} that does not exist: {target}; create it, or "
                         "remove the link")
    if path.is_symlink():
        raise InputError(f"{given}: {path} is a symbolic link (to {os.readlink(path)}); an output is written where "
                         "it is named, not through a link: give the real path, or remove the link")


def check_name_lengths(path: Path, given: str) -> None:
    """One line for a folder or file name of `path` longer than its filesystem allows (ENAMETOOLONG), before
    anything is created; the limit is the nearest existing folder's (`os.pathconf`, 255 bytes where unknown)."""
    existing = next((p for p in path.absolute().parents if os.path.isdir(p)), Path("/"))  # isdir: no ENAMETOOLONG
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise InputError(f"{given}: the name {part[:40]}... is {len(os.fsencode(part))} bytes long, longer than "
                             f"the filesystem allows ({limit} bytes); give a shorter name")


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
FULL_BYTES = 1 << 20  # less free than this after a failed write: the disk is full, whatever the writer said


def disk_full(error: BaseException, where: str | os.PathLike | None) -> InputError | None:
    """The one-line error for a write that failed because the disk (or quota) is full, else None: an OSError
    ENOSPC / EDQUOT, or any other error of a writer (torch.save: 'unexpected pos', pyarrow, PyAV) when the
    filesystem of `where` has less than FULL_BYTES left afterwards."""
    named = where if where is not None else getattr(error, "filename", None)  # the output, not a staging name
    full = isinstance(error, OSError) and error.errno in NO_SPACE
    if not full and where is not None:
        folder = next((p for p in [Path(where), *Path(where).parents] if os.path.isdir(p)), None)
        try:
            full = folder is not None and shutil.disk_usage(folder).free < FULL_BYTES
        except OSError:
            full = False
    if not full:
        return None
    named = f"{named}: " if named else ""
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror  # without the file name, which may be a staging file's
    else:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
    return InputError(f"{named}no space left on the device (the write failed: {reason}); free some space or give an "
                      "output on another disk")


@contextlib.contextmanager
def writing(where: str | os.PathLike) -> Iterator[None]:
    """A block that writes `where`: a full disk ends it with `disk_full`'s one-line InputError."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        full = disk_full(error, where)
        if full is None:
            raise
        raise full from error


def check_new(outputs: Iterable[Path], *, overwrite: bool, what: str = "output") -> None:
    """Refuse outputs that already exist unless `overwrite`: an earlier run's files are the user's. An output
    under a symbolic link to nothing is refused first (`check_link`)."""
    outputs = [Path(p) for p in outputs]
    for path in outputs:
        check_link(path)
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]} already exists{more}; this {what} would replace it: give --overwrite to "
                         "replace it, or another output")


def writable(folder: Path, flag: str) -> Path:
    """`folder`, created if needed and shown writable (a file made and removed in it), or one line naming it."""
    folder = Path(folder)
    check_link(folder, flag, folder=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lara-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"{flag} {folder}: cannot write there ({error.strerror or error}); give a folder you can "
                         "write to") from None
    return folder


def _prefix(target: Path) -> str:
    return f".{target.name}."


def _writer_pid(staging: Path, target: Path) -> int | None:
    """The process id in a staging name `.NAME.<pid>.<random>[.tmp]`, None when it is not one of ours."""
    rest = staging.name[len(_prefix(target)):]
    pid = rest.split(".", 1)[0]
    return int(pid) if pid.isdigit() and "." in rest else None


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with this pid exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging files and folders of `target` whose writer process is gone; returns them."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    removed = []
    for path in target.parent.glob(f"{_prefix(target)}*"):
        pid = _writer_pid(path, target)
        if pid is None or pid == os.getpid() or process_alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def staging_file(target: Path) -> tuple[int, Path]:
    """An open file descriptor and the path of a new staging file beside `target` (after clearing stale ones)."""
    remove_stale_staging(target)
    fd, path = tempfile.mkstemp(prefix=f"{_prefix(target)}{os.getpid()}.", suffix=".tmp", dir=target.parent)
    return fd, Path(path)


def staging_folder(target: Path) -> Path:
    """A new staging folder beside `target` (after clearing stale ones)."""
    remove_stale_staging(target)
    return Path(tempfile.mkdtemp(prefix=f"{_prefix(target)}{os.getpid()}.", suffix=".tmp", dir=target.parent))


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process umask (set and restored to read it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def new_staging_file(target: Path) -> Path:
    """A new, empty staging file beside `target` with a new file's mode (mkstemp's 0600 would make the output
    private to its writer), after clearing stale ones; `publish` moves it onto `target`."""
    fd, path = staging_file(target)
    try:
        os.fchmod(fd, new_file_mode())
    finally:
        os.close(fd)
    return path


def staging_beside(target: Path, *, folder: bool = False, error: type[Exception] = InputError) -> Path:
    """A new staging file (or folder) beside `target`, its parent created first; a place that cannot be written
    ends on one line as `error` naming `target` (never the hidden staging name)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return staging_folder(target) if folder else new_staging_file(target)
    except OSError as failure:
        raise error(f"{target}: cannot write there ({failure.strerror or failure}); give a folder you can write "
                    "to.") from None


def publish(staging: Path, target: Path) -> Path:
    """Move a finished staging file onto `target` atomically (one filesystem), its bytes on disk first."""
    with open(staging, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, target)
    return Path(target)


@contextlib.contextmanager
def replacing(target: str | os.PathLike) -> Iterator[Path]:
    """A staging path to write `target`'s new content to; it replaces `target` when the block ends, and is removed
    when the block raises (`target` is then left as it was)."""
    target = Path(target)
    staging = new_staging_file(target)
    try:
        with writing(target):
            yield staging
            publish(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    """`target` holding `text`, written through `replacing`: whole or not at all (a results.json, a report)."""
    with replacing(target) as staging:
        staging.write_text(text)
    return Path(target)


def save_figure(fig, target: str | os.PathLike, **kwargs) -> Path:
    """A matplotlib figure saved as PNG through `replacing` (the staging name has no .png for it to go by)."""
    with replacing(target) as staging:
        fig.savefig(staging, format="png", **kwargs)
    return Path(target)


def publish_folder(staging: Path, target: Path) -> Path:
    """Move a finished staging folder onto `target`; an earlier `target` is set aside first and removed only once
    the new one is in place."""
    if target.exists():
        earlier = staging.with_name(staging.name + ".earlier")
        target.rename(earlier)
        staging.rename(target)
        shutil.rmtree(earlier)
    else:
        staging.rename(target)
    return target
