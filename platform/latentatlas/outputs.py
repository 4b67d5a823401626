"""Faults of the machine while an output is written (a full disk, a spent quota, a read-only
folder, a folder that vanishes mid-run): one line naming the path and what it needed, and
nothing half-written left there. `writing` wraps a writer; `fault_line` is the same line for
a fault that reaches a command's edge outside any writer (MLflow's own files)."""

from __future__ import annotations

import errno
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from latentatlas.errors import UserError

FAULTS = {
    errno.ENOSPC: "no space left on its disk",
    errno.EDQUOT: "the disk quota is spent",
    errno.EROFS: "its file system is read-only",
    errno.EACCES: "no permission to write there",
    errno.ENOENT: "its folder is gone (never made, or removed while it was written)",
    errno.ESTALE: "its folder is gone (removed while it was written)",
}
# Ray Data keeps a worker's exception only as the text of its traceback; SQLite says "full"
# in words
ERRNO_TEXT = re.compile(r"\[Errno (\d+)\]")
SQLITE_FULL = "database or disk is full"
SQLITE_DATABASE = "<the SQLite database>"  # the file SQLite's error leaves unnamed
DISK_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def os_fault_in(error: BaseException | None) -> tuple[int, str | None] | None:
    """(errno, filename) of the machine fault behind `error` (itself, a cause, or the text
    of a Ray worker's traceback), or None. The filename is the one written to where the
    error says it (a copy's destination, `filename2`, before its source), None where it does
    not, SQLITE_DATABASE for SQLite's "database or disk is full". A fault known only from
    text is one of the disk's (full, quota, read-only): a missing or unreadable file in a
    traceback may be an input's. Along a chain a fault of the disk wins over the others: a
    cleanup that fails on a missing file after a full disk says less than the disk."""
    seen, found = set(), []
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FAULTS:
            found.append((error.errno, error.filename2 or error.filename))
        elif SQLITE_FULL in str(error):
            found.append((errno.ENOSPC, SQLITE_DATABASE))
        elif (codes := ERRNO_TEXT.findall(str(error))) and int(codes[-1]) in DISK_FAULTS:
            found.append((int(codes[-1]), None))
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return next((f for f in found if f[0] in DISK_FAULTS), found[0] if found else None)


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system that holds `path` (its nearest existing folder)."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def fault_line(path: Path | str, code: int, need: int | None = None,
               cleaned: bool = True) -> str:
    """`path`: could not be written, why; the bytes it needed and those free, where known;
    `cleaned`: what was begun is gone."""
    free = free_bytes(Path(path)) if Path(path).is_absolute() else None
    sizes = [f"it needs about {need:,} bytes" if need is not None else None,
             f"{free:,} free there" if free is not None and code in (errno.ENOSPC,
                                                                     errno.EDQUOT) else None]
    sizes = "; ".join(s for s in sizes if s)
    return (f"{path}: could not be written: {FAULTS[code]}" + (f" ({sizes})" if sizes else "")
            + ("; nothing half-written was kept" if cleaned else ""))


def save_tensors(state, path: Path | str) -> int:
    """`torch.save(state, path)`, serialised in memory first (the state is held twice for a
    moment): torch's own file writer turns a full disk into a RuntimeError that names no
    errno and no file, where a plain write raises the OSError, with `path`, that `writing`
    names. Either way a cut-short file may stay: callers write into a temporary folder they
    remove. Its bytes."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        Path(path).write_bytes(buffer.getbuffer())
    except OSError as e:  # a failed write names no file: this one
        raise OSError(e.errno, e.strerror, e.filename or str(path)) from e
    return buffer.tell()


def remove(paths: Iterable[Path]) -> None:
    """What a failed writer began, as far as the fault lets it go (a read-only file system
    refuses even to unlink what is not there)."""
    for path in paths:
        path = Path(path)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


def within(path: str, folders: Iterable[Path]) -> bool:
    return any(Path(path).is_relative_to(f) for f in folders)


@contextmanager
def writing(out: Path | str | Callable[[], str], need: int | None = None,
            partial: Iterable[Path] | Callable[[], Iterable[Path]] = (),
            cleaned: bool = True) -> Iterator[None]:
    """Write `out` (about `need` bytes) in this block. A fault of the machine in it removes
    `partial` (what the writer had begun) and becomes one UserError naming `out`, or the file
    it hit where that lies elsewhere (a full temporary folder). A missing or unwritable path
    is this writer's fault only where it lies in `out`'s folder; a UserError, or SQLite's
    full database (the command's edge names it), passes through. `out` and `partial` may be
    given as functions, asked only on a fault; `cleaned`: `partial` is all the writer
    began (else the line does not say that nothing was kept)."""
    from latentatlas.command import user_error_in

    try:
        yield
    except Exception as e:
        fault = os_fault_in(e)
        if fault is None or fault[1] == SQLITE_DATABASE or user_error_in(e) is not None:
            raise
        code, filename = fault
        out = Path(out() if callable(out) else out)
        begun = [Path(p) for p in (partial() if callable(partial) else partial)]
        ours = [out.parent, *begun]
        if code not in DISK_FAULTS and not (filename and within(filename, ours)):
            raise  # a missing or unreadable file elsewhere: an input's, not this output's
        remove(begun)
        where = filename if filename and code in DISK_FAULTS and not within(filename, ours) \
            else out
        raise UserError(fault_line(where, code, need, cleaned)) from None
