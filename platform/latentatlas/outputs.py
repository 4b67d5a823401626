"""Faults of the machine while an output is written (a full disk, a spent quota, a read-only
folder, a folder that vanishes mid-run): one line naming the path and what it needed, and
nothing half-written left there. `writing` wraps a writer; `fault_line` is the same line for
a fault that reaches a command's edge outside any writer (MLflow's own files)."""

from __future__ import annotations

import errno
import re
import shutil
from collections.abc import Iterable, Iterator
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


def os_fault_in(error: BaseException | None) -> tuple[int, str | None] | None:
    """(errno, filename) of the machine fault behind `error` (itself, a cause, or the text
    of a Ray worker's traceback), or None. The filename is None where the error does not
    say it, SQLITE_DATABASE for SQLite's "database or disk is full"."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FAULTS:
            return error.errno, error.filename
        if SQLITE_FULL in str(error):
            return errno.ENOSPC, SQLITE_DATABASE
        if (found := ERRNO_TEXT.findall(str(error))) and int(found[-1]) in FAULTS:
            return int(found[-1]), None
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


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
    free = free_bytes(Path(path))
    sizes = [f"it needs about {need:,} bytes" if need is not None else None,
             f"{free:,} free there" if free is not None and code in (errno.ENOSPC,
                                                                     errno.EDQUOT) else None]
    sizes = "; ".join(s for s in sizes if s)
    return (f"{path}: could not be written: {FAULTS[code]}" + (f" ({sizes})" if sizes else "")
            + ("; nothing half-written was kept" if cleaned else ""))


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


@contextmanager
def writing(out: Path | str, need: int | None = None,
            partial: Iterable[Path] = ()) -> Iterator[None]:
    """Write `out` (about `need` bytes) in this block: a machine fault in it removes
    `partial` (what the writer had begun) and becomes one UserError naming `out`."""
    try:
        yield
    except Exception as e:
        fault = os_fault_in(e)
        if fault is None:
            raise
        code, filename = fault
        # the file the fault hit, where it is this writer's, is half-written (a copy's error
        # may name its source instead: that one is left alone)
        mine = filename and str(filename).startswith(str(Path(out).parent))
        remove([*partial, *([Path(filename)] if mine and code in (errno.ENOSPC, errno.EDQUOT)
                            and Path(filename).is_file() else [])])
        raise UserError(fault_line(out, code, need)) from None
