"""Interrupted work loses nothing: a SIGKILLed process leaves no run RUNNING forever and no
half-written encoding behind."""

import os
import signal
import socket
import subprocess
import sys

from conftest import REPO

from latentatlas.encode.store import remove_dead_temps, temp_sibling
from latentatlas.tracking import OWNER_TAG, STALE_TAG, Recorder

HOLD_A_RUN = """
import os, sys, time
from latentatlas.tracking import Recorder
recorder = Recorder(sys.argv[1], "interrupted")
with recorder.run("parent", "relocate-all") as run_id:
    print(run_id, os.getpid(), flush=True)
    time.sleep(600)
"""

WRITE_A_TEMP = """
import os, sys, time
from pathlib import Path
from latentatlas.encode.store import temp_sibling
tmp = temp_sibling(Path(sys.argv[1]))
tmp.mkdir()
(tmp / "part.parquet").write_text("half")
print(os.getpid(), flush=True)
time.sleep(600)
"""


def killed_midway(code: str, *args) -> str:
    """Start `code` in its own process, read the first line it prints, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)
    line = proc.stdout.readline().strip()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return line


def test_a_killed_processs_runs_end_failed_at_the_next_command(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    recorder = Recorder(uri, "interrupted")
    with recorder.run("alive", "stats") as mine:  # this process's own run stays RUNNING
        run_id, pid = killed_midway(HOLD_A_RUN, uri).split()
        assert recorder.client.get_run(run_id).info.status == "RUNNING"  # nothing ended it
        Recorder(uri, "interrupted")  # the next command, whatever it is
        killed = recorder.client.get_run(run_id)
        assert killed.info.status == "FAILED" and killed.data.tags[STALE_TAG]
        assert killed.data.tags[OWNER_TAG] == f"{socket.gethostname()}:{pid}"
        assert recorder.client.get_run(mine).info.status == "RUNNING"
    assert recorder.client.get_run(mine).info.status == "FINISHED"


def test_what_a_killed_encode_was_writing_is_removed_and_never_visible(tmp_path):
    out = tmp_path / "enc"
    pid = killed_midway(WRITE_A_TEMP, str(out))
    leftovers = list(tmp_path.glob(".enc.tmp-*"))
    assert [p.name.split("-")[1] for p in leftovers] == [pid]  # hidden, and names its writer
    assert not out.exists()
    mine = temp_sibling(out)  # the rerun's own temp folder; the dead writer's is gone
    mine.mkdir()
    assert list(tmp_path.glob(".enc.tmp-*")) == [mine]
    assert remove_dead_temps(out) == []  # a live writer's folder is left alone
