"""A local Ray instance keeps token authentication on without writing the user's home, and
its workers reach it, not another instance on the same machine."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import SESSION_HOME

from latentatlas.runtime import API_SERVER, local_token_env, own_api_server
from latentatlas.session import free_port


def test_a_local_instance_has_a_token_that_no_file_holds(ray_session):
    # conftest gives the session an empty HOME: plain ray.init() would write its token
    # file (mode 0644) into it.
    assert not (SESSION_HOME / ".ray").exists()
    assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64

    @ray_session.remote
    def worker_token():
        return os.environ.get("RAY_AUTH_TOKEN")

    assert ray_session.get(worker_token.remote()) == os.environ["RAY_AUTH_TOKEN"]


def test_a_configured_token_is_used_as_it_is(tmp_path):
    fresh = local_token_env({}, tmp_path)  # nothing configured: a fresh token, no file
    assert fresh["RAY_AUTH_MODE"] == "token" and len(fresh["RAY_AUTH_TOKEN"]) == 64
    assert local_token_env({}, tmp_path)["RAY_AUTH_TOKEN"] != fresh["RAY_AUTH_TOKEN"]
    assert not (tmp_path / ".ray").exists()
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        assert local_token_env({key: "x"}, tmp_path) == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(fresh["RAY_AUTH_TOKEN"])
    assert local_token_env({}, tmp_path) == {}  # an existing token file is used


@contextmanager
def another_instance():
    """A second Ray instance on this machine (a second study's, a `latentatlas up`'s), with
    its own ports and folder (short: Ray's socket paths must fit 107 bytes), killed with its
    whole process group afterwards."""
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")

    env = {k: v for k, v in os.environ.items()
           if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH")}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         f"--port={free_port()}", "--num-cpus=0", "--include-dashboard=false",
         f"--temp-dir={temp_dir}", "--disable-usage-stats",
         *(f"--{flag}={free_port()}" for flag in (
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port"))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not Path(temp_dir, "session_latest", "sockets", "raylet").exists():
            assert head.poll() is None and time.monotonic() < deadline, "no second instance"
            time.sleep(0.2)
        yield
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.cluster  # starts a second Ray instance
def test_a_dead_train_controllers_workers_are_released_beside_another_instance(
        ray_session):
    """Ray Train's placement-group cleaner, a detached actor, removes a run's worker group
    when the run's controller dies (a trial ASHA stopped, a killed training). It asks Ray's
    State API without an address: with a second instance on the machine that call failed,
    the cleaner stopped, and the group's CPUs stayed reserved, so a sweep waited forever
    (seen with two test sessions side by side). Ray Train's own cleaner, on the session's
    instance, with another instance running."""
    from ray.train.v2._internal.execution.controller.placement_group_cleaner import (
        PlacementGroupCleaner,
    )
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    ray = ray_session

    @ray.remote(num_cpus=0)
    class Controller:
        def ping(self):
            return True

    with another_instance():
        group = placement_group([{"CPU": 0.5}])
        ray.get(group.ready(), timeout=60)
        controller = Controller.remote()
        ray.get(controller.ping.remote())
        cleaner = ray.remote(num_cpus=0)(PlacementGroupCleaner).options(
            lifetime="detached").remote(controller_actor_id=controller._actor_id.hex(),
                                        check_interval_s=0.2, get_actor_timeout_s=10,
                                        stop_timeout=2)
        try:
            ray.get(cleaner.register_placement_group.remote(group))
            ray.get(cleaner.start_monitoring.remote())
            ray.kill(controller)
            deadline = time.monotonic() + 30
            while (placement_group_table(group)["state"] != "REMOVED"
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            assert placement_group_table(group)["state"] == "REMOVED"
        finally:
            remove_placement_group(group)  # left by a failed cleaner: later tests need it
            ray.kill(cleaner)


@pytest.mark.parametrize("users", [None, "http://10.0.0.9:8265"])
def test_the_api_server_is_named_only_while_the_instance_starts(monkeypatch, users):
    """What the driver starts later must not inherit its instance's name, and a value the
    user set comes back."""
    if users is None:
        monkeypatch.delenv(API_SERVER, raising=False)
    else:
        monkeypatch.setenv(API_SERVER, users)
    with own_api_server("http://127.0.0.1:1234"):
        assert os.environ[API_SERVER] == "http://127.0.0.1:1234"
    assert os.environ.get(API_SERVER) == users
