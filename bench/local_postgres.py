"""A throwaway PostgreSQL server for the tracking-server tests and benchmarks: Debian's
`postgresql` binaries, a cluster initialised in a temporary folder, listening on a free
loopback port only, stopped and gone afterwards. PostgreSQL refuses to run as root: as root
the cluster belongs to the `postgres` user the package creates."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None where PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def unavailable() -> str | None:
    """Why a temporary PostgreSQL cannot run here, or None."""
    if binaries() is None:
        return ("PostgreSQL is not installed (make test installs Debian's postgresql where it "
                "may: as root or with passwordless sudo)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` user to own the server"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start the server as `postgres`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def temporary_postgres(database: str = "mlflow", *more: str):
    """A PostgreSQL server over a new cluster in a temporary folder of its own (the server's
    user must reach it: not under a folder only root may enter), with `database` and each of
    `more` created; yields the SQLAlchemy URI of `database`
    (`postgresql://latentatlas@127.0.0.1:PORT/DATABASE`, trusted on loopback only: the URI of
    another is `sibling(uri, name)`)."""
    bin_dir, port = binaries(), free_port()
    folder = Path(tempfile.mkdtemp(prefix="latentatlas-pg-"))
    folder.chmod(0o755)
    data, sockets = folder / "pgdata", folder / "pgsocket"
    data.mkdir(parents=True)
    sockets.mkdir()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (folder, data, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]

    def run(*argv: str) -> None:
        subprocess.run([*as_owner, *argv], check=True, capture_output=True, text=True,
                       timeout=120)

    log = folder / "postgres.log"
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "latentatlas", "--auth=trust",
        "--no-instructions", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start")
    try:
        for name in (database, *more):
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                "latentatlas", name)
        yield f"postgresql://latentatlas@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def sibling(uri: str, database: str) -> str:
    """The URI of another database on the server of `uri`."""
    return uri.rsplit("/", 1)[0] + "/" + database
