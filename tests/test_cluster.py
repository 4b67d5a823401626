"""What a user does on a cluster, on this machine: cluster.yaml passes Ray's own validation;
a real `ray start --head` plus a second node, a real `mlflow server`, and a `train` job
submitted with the Jobs SDK under token authentication."""

import contextlib
import copy
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import yaml
from conftest import REPO, images_over_steps, make_idx_dataset

from jobs.kinds.train import val_mse_history

pytestmark = pytest.mark.cluster


def test_cluster_yaml_passes_rays_validation():
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] >= 1 and workers["max_workers"] >= 1
    assert "GPU" not in config["available_node_types"][config["head_node_type"]]["resources"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    raw["available_node_types"]["head"]["node_config_typo"] = {}
    with pytest.raises(ValidationError, match="node_config_typo"):
        validate_config(prepare_config(raw))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_ports() -> list[str]:
    """Free ports for a node's agents: the defaults (e.g. 52365) are taken by the test
    session's own local Ray instance when it runs first, and a node whose job agent cannot
    bind answers every submission with "No available agent"."""
    return [f"--{flag}={free_port()}" for flag in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port")]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    """Foreground processes in their own process groups, stopped together."""

    def __init__(self, env):
        self.env, self.procs = env, []

    def start(self, args, log: Path):
        proc = subprocess.Popen(args, env=self.env, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:  # Ray drains for up to 30 s on SIGTERM; nothing here needs draining
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: raylet, GCS, workers
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A two-node Ray cluster (`ray start --head --block` and a second `ray start --block`)
    with token auth and a loopback dashboard, and an `mlflow server` on a free loopback
    port. Own temp dirs (short: Ray's socket paths must fit 107 bytes)."""
    work = tmp_path_factory.mktemp("cluster")
    ray_tmp = tempfile.mkdtemp(prefix="la-", dir="/tmp")
    # Each node its own temp dir: two raylets sharing one would garbage-collect each
    # other's runtime-env packages (a job's working_dir vanished under it here).
    worker_tmp = tempfile.mkdtemp(prefix="la-w-", dir="/tmp")
    bin_dir = Path(sys.executable).parent
    # The cluster's own token (0600) and an empty HOME: nothing here reads or writes the
    # user's home, so the test behaves the same on a fresh machine as on a used one.
    home = work / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(write_token(work / "auth_token")),
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{bin_dir}:{os.environ['PATH']}",
           # a lost node is declared dead within ~10 s, not Ray's ~30 s (the node-loss
           # test); five missed checks of 2 s: a busy node on two cores still answers one
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
           "RAY_health_check_failure_threshold": "5"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    gcs, dashboard, mlflow_port = free_port(), free_port(), free_port()
    procs = Processes(env)
    try:
        procs.start([str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1",
                     "--port", str(mlflow_port), "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                     "--artifacts-destination", str(work / "artifacts")], work / "mlflow.log")
        procs.start([str(bin_dir / "ray"), "start", "--head", "--block",
                     "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=1",
                     "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
                     f"--temp-dir={ray_tmp}", "--disable-usage-stats", *agent_ports()],
                    work / "head.log")
        address = f"http://127.0.0.1:{dashboard}"
        wait_for(lambda: http_status(f"{address}/api/version", f"Bearer {token(env)}") == 200, 90,
                 "the Ray dashboard")
        worker = procs.start([str(bin_dir / "ray"), "start", "--block",
                              f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1",
                              "--num-cpus=1", f"--temp-dir={worker_tmp}", *agent_ports()],
                             work / "worker.log")
        tracking = f"http://127.0.0.1:{mlflow_port}"
        wait_for(lambda: http_status(f"{tracking}/health", None) == 200, 90, "the MLflow server")
        yield {"address": address, "gcs": f"127.0.0.1:{gcs}", "tracking_uri": tracking,
               "work": work, "env": env, "worker": worker, "worker_tmp": worker_tmp}
    finally:
        procs.stop()
        for path in (ray_tmp, worker_tmp):
            shutil.rmtree(path, ignore_errors=True)
    assert not (home / ".ray").exists(), "the cluster wrote a token into its HOME"


def write_token(path: Path) -> Path:
    """A random token in a file only its owner can read (Ray's own generator writes 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


SUBMIT = """
import sys, time
from ray.job_submission import JobStatus, JobSubmissionClient

address, repo, tracking_uri, entrypoint = sys.argv[1:5]
client = JobSubmissionClient(address)
deadline = time.time() + 60
while True:  # the head's job agent registers a few seconds after the dashboard answers
    try:
        job = client.submit_job(entrypoint=entrypoint, runtime_env={
            "working_dir": repo,
            "env_vars": {"MLFLOW_TRACKING_URI": tracking_uri,
                         "MLFLOW_EXPERIMENT_NAME": "cluster"}})
        break
    except RuntimeError as e:
        if "No available agent" not in str(e) or time.time() > deadline:
            raise
        time.sleep(1)
deadline = time.time() + 300
while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                         JobStatus.STOPPED) and time.time() < deadline:
    time.sleep(1)
print(client.get_job_logs(job))
print("JOB STATUS:", client.get_job_status(job))
"""


def test_train_job_submitted_to_the_cluster_logs_to_the_mlflow_server(cluster):
    """The submitting side is its own process, as on a user's laptop: the Jobs SDK with
    RAY_AUTH_MODE=token and the cluster's token file (RAY_AUTH_TOKEN_PATH)."""
    from latentatlas import model_store

    wait_for(lambda: sum(ray_nodes(cluster)) == 2, 60, "the second node")
    data = make_idx_dataset(cluster["work"] / "idx", n_train=256, n_test=64)
    entrypoint = ("python -m jobs.train jobs/configs/fmnist_dense.yaml "
                  f"--set data.name=mnist --set data.path={data} --set data.limit=256 "
                  "--set model.hidden=[32] --set model.latent_dim=4 --set train.epochs=2 "
                  "--set train.num_workers=2 --set train.cpus_per_worker=0.5 "
                  "--set train.batch_size=32 --set name=cluster-job")
    res = subprocess.run([sys.executable, "-c", SUBMIT, cluster["address"], str(REPO),
                          cluster["tracking_uri"], entrypoint], env=cluster["env"],
                         capture_output=True, text=True, timeout=400)
    logs = res.stdout
    assert "JOB STATUS: SUCCEEDED" in logs, (logs + res.stderr)[-4000:]
    run_id = re.search(r"MLflow run id: ([0-9a-f]{32})", logs).group(1)

    # load_vae below reads MLflow's global URI: set for this check, then restored.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(cluster["tracking_uri"])
    try:
        server = mlflow.MlflowClient(cluster["tracking_uri"])
        run = server.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["train.num_workers"] == "2"
        assert run.data.params["data.name"] == "mnist"
        assert [m.step for m in server.get_metric_history(run_id, "val/mse")] == [1, 2]
        artifacts = {a.path for a in server.list_artifacts(run_id)}
        assert {"reconstructions.png", "samples.png", "config.yaml"} <= artifacts
        # what the run's pages show, read through the server's REST API: pictures over
        # epochs, readable in size; the machine's use per epoch; the node rank 0 ran on
        assert images_over_steps(server, run_id) == {"reconstructions": [1, 2],
                                                     "samples": [1, 2]}
        picture = mlflow.artifacts.load_image(f"runs:/{run_id}/reconstructions.png")
        assert picture.size[0] >= 600
        assert [m.step for m in server.get_metric_history(
            run_id, "system/cpu_utilization_percentage")] == [1, 2]
        assert len(run.data.tags["latentatlas.node_id"]) == 56
        model, spec = model_store.load_vae(f"runs:/{run_id}/model")  # through the server's proxy
        assert model.latent_dim == 4 and spec["input_shape"] == [1, 28, 28]
    finally:
        mlflow.set_tracking_uri(previous)

    # The job API refuses requests without the token, and with a wrong one.
    for header in (None, "Bearer not-the-token"):
        assert http_status(f"{cluster['address']}/api/jobs/", header) in (401, 403)
    assert http_status(f"{cluster['address']}/api/jobs/",
                       f"Bearer {token(cluster['env'])}") == 200
    assert stat.S_IMODE(os.stat(cluster["env"]["RAY_AUTH_TOKEN_PATH"]).st_mode) == 0o600


def token(env: dict) -> str:
    return Path(env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()


def http_status(url: str, authorization: str | None) -> int:
    req = urllib.request.Request(url)
    if authorization:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:  # not listening yet
        return 0


def ray_nodes(cluster) -> list[bool]:
    import json

    req = urllib.request.Request(f"{cluster['address']}/nodes?view=summary")
    req.add_header("Authorization", f"Bearer {token(cluster['env'])}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            summary = json.loads(r.read())["data"]["summary"]
    except OSError:
        return []
    return [n["raylet"]["state"] == "ALIVE" for n in summary]


def test_a_gpu_training_on_a_cluster_without_gpus_waits_then_fails_in_one_line(cluster):
    """A joined cluster may grow (an autoscaler adds GPU nodes on demand), so a GPU request
    waits, says so, and fails with one line after --resource-timeout seconds, instead of
    Ray Train's traceback minutes later."""
    data = make_idx_dataset(cluster["work"] / "idx-gpu", n_train=64, n_test=32)
    res = subprocess.run(
        [sys.executable, "-m", "jobs.train", "jobs/configs/fmnist_dense.yaml",
         "--ray-address", cluster["gcs"], "--tracking-uri", cluster["tracking_uri"],
         "--resource-timeout", "3", "--set", "data.name=mnist", "--set", f"data.path={data}",
         "--set", "train.use_gpu=true", "--set", "name=gpu-wait"],
        cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "waits up to 3 s for 1 GPU (the cluster has 2 CPU, 0 GPU" in res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: train.use_gpu: no 1 GPU arrived within 3 s (the cluster has "
                      "2 CPU, 0 GPU); raise --resource-timeout or add such nodes"], res.stderr
    assert "Traceback" not in res.stderr


# Holds the head's one CPU (pinned there) until this process dies, so that a training
# started meanwhile lands on the other node.
HEAD_BLOCKER = """
import sys, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], logging_level="ERROR")
head = next(n["NodeID"] for n in ray.nodes()
            if n["Alive"] and "node:__internal_head__" in n["Resources"])

@ray.remote(num_cpus=1)
class Blocker:
    def node(self):
        return ray.get_runtime_context().get_node_id()

blocker = Blocker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)
                          ).remote()
print("head", ray.get(blocker.node.remote()), flush=True)
time.sleep(900)
"""


def test_a_training_whose_node_dies_finishes_on_the_node_that_remains(cluster):
    """The cluster's second node is killed (SIGKILL to its raylet and workers, as a lost
    machine) while a training's one worker runs on it: with `train.max_failures: 1` Ray Train
    starts the worker again on the head, from the last checkpoint, and the job succeeds;
    every epoch is logged, and the run says it ended on the head. Last in this module: the
    cluster has one node after it."""
    wait_for(lambda: sum(ray_nodes(cluster)) == 2, 60, "the second node")
    data = make_idx_dataset(cluster["work"] / "idx-loss", n_train=2048, n_test=64)
    blocker = subprocess.Popen([sys.executable, "-c", HEAD_BLOCKER, cluster["gcs"]],
                               env=cluster["env"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    ready, _, _ = select.select([blocker.stdout], [], [], 120)
    said = blocker.stdout.readline().split() if ready else []
    if said[:1] != ["head"]:
        os.killpg(blocker.pid, signal.SIGKILL)
        pytest.fail(f"the head's CPU was not held: {blocker.stderr.read()[-3000:]}")
    head = said[1]
    results = cluster["work"] / "results-loss"
    # 6 epochs of 128 steps: the node dies after the first, five remain to restart into
    entrypoint = ("python -m jobs.train jobs/configs/fmnist_dense.yaml "
                  f"--set data.name=mnist --set data.path={data} --set data.limit=2048 "
                  "--set model.hidden=[64] --set model.latent_dim=4 --set train.epochs=6 "
                  "--set train.batch_size=16 --set train.until_settled=false "
                  "--set train.num_workers=1 --set train.cpus_per_worker=1 "
                  f"--set train.max_failures=1 --set train.storage_path={results} "
                  "--set name=node-loss")
    job = subprocess.Popen([sys.executable, "-c", SUBMIT, cluster["address"], str(REPO),
                            cluster["tracking_uri"], entrypoint], env=cluster["env"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = mlflow.MlflowClient(cluster["tracking_uri"])

    def first_epoch_logged():
        experiment = server.get_experiment_by_name("cluster")
        runs = experiment and server.search_runs(
            [experiment.experiment_id], "attributes.run_name = 'node-loss'")
        return runs and "val/mse" in runs[0].data.metrics and runs[0]

    def registered_epoch():
        """The epoch of the latest checkpoint Ray Train's controller has registered (what a
        restart continues from); the worker may have checkpointed and logged later ones."""
        try:  # Ray writes it in place: it may be read half-written
            snapshot = json.loads(next(results.glob("*/checkpoint_manager_snapshot.json"))
                                  .read_text())
        except (StopIteration, json.JSONDecodeError):
            return None
        latest = snapshot["latest_checkpoint_result"]
        return latest and latest["metrics"]["epoch"]

    try:
        run = wait_for(first_epoch_logged, 240, "the training's first epoch")
        victim = run.data.tags["latentatlas.node_id"]
        assert victim != head  # on the second node: the head's CPU is held
        registered = wait_for(registered_epoch, 60, "a registered checkpoint")
    finally:
        os.killpg(blocker.pid, signal.SIGKILL)  # the head's CPU is free again
        blocker.wait()
    # the node dies, as a machine does: its raylet and every process of it at once (Ray's
    # workers are not all in `ray start`'s process group: one left alive kept training and
    # logging while the cluster restarted it elsewhere)
    os.killpg(cluster["worker"].pid, signal.SIGKILL)
    for pid in node_processes(cluster["worker_tmp"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    logs, _ = job.communicate(timeout=400)
    assert "JOB STATUS: SUCCEEDED" in logs, logs[-4000:]
    run = server.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["latentatlas.node_id"] == head  # it ended on the node that remains
    # from the last registered checkpoint, not from scratch: every epoch up to it is logged
    # once. The epochs the lost worker logged after it (not yet registered by the controller
    # when the node died) are trained again and logged again.
    continued = int(run.data.tags["latentatlas.continued_from_epoch"])
    assert continued >= registered >= 1
    logged = server.get_metric_history(run.info.run_id, "val/mse")
    steps = sorted(m.step for m in logged)
    assert sorted(set(steps)) == [1, 2, 3, 4, 5, 6]
    assert all(steps.count(epoch) == 1 for epoch in range(1, continued + 1))
    # what LatentAtlas reads back (the learning test's history): one value per epoch, the
    # later where an epoch was logged twice (the model went on from that one)
    last = {m.step: m.value for m in sorted(logged, key=lambda m: m.timestamp)}
    assert val_mse_history(SimpleNamespace(client=server), run.info.run_id) == [
        last[epoch] for epoch in range(1, 7)]


def node_processes(temp_dir: str) -> list[int]:
    """The processes of a local Ray node: those whose command line, working folder or open
    files (a worker's log files) lie in its temp folder. (Ray retitles its workers, so their
    command line does not say.)"""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            places = [(entry / "cmdline").read_bytes().decode(errors="replace"),
                      os.readlink(entry / "cwd")]
            places += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # ended meanwhile
            continue
        if any(temp_dir in place for place in places):
            found.append(int(entry.name))
    return found
