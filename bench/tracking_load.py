"""Many writers against one `mlflow server`, as a sweep's trials log at once on a cluster.

N processes each create a run and log M metrics (one request each, as training does per
epoch), 10 params and a small artifact, concurrently, against a real `mlflow server` with
its default 4 workers: on SQLite, then on a temporary PostgreSQL behind MLflow's basic-auth
app (as cluster.yaml runs it; bench/local_postgres.py), side by side, or on the one backend
store given. Counted: requests that raised (after MLflow's own retries), writes that
succeeded but are not in the store (lost), and writes per second.

    python bench/tracking_load.py [--writers 16] [--metrics 500] [--backend URI]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

def write(uri: str, experiment_id: str, metrics: int, index: int) -> dict:
    """One writer: a run, `metrics` metrics (a request each), 10 params, a small artifact;
    what succeeded and the errors that reached it (after MLflow's own retries)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(experiment_id, run_name=f"writer-{index}").info.run_id
    ok = {"metric": 0, "param": 0, "artifact": 0}
    errors = []
    writes = [("metric", lambda step=step: client.log_metric(run_id, "load/value", float(step),
                                                              step=step))
              for step in range(metrics)]
    writes += [("param", lambda i=i: client.log_param(run_id, f"p{i}", i)) for i in range(10)]
    writes += [("artifact", lambda: client.log_text(run_id, "x" * 1000, "small.txt"))]
    for kind, request in writes:
        try:
            request()
            ok[kind] += 1
        except Exception as e:
            errors.append(type(e).__name__ + ": " + str(e).splitlines()[0][:120])
    client.set_terminated(run_id)
    return {"run_id": run_id, "ok": ok, "errors": errors}


# a writer process, as a sweep's trials are
WRITER = (f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); "
          "from tracking_load import write; "
          "print(json.dumps(write(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, timeout: float = 90) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout:.0f} s")


ADMIN = "admin"


@contextmanager
def mlflow_server(backend: str, work: Path, admin_password: str | None = None,
                  auth_store: str | None = None):
    """A real `mlflow server` (4 workers) on `backend`, artifacts under `work`; its URL. With
    `admin_password`, MLflow's basic-auth app on: its logins in `auth_store` (a SQLAlchemy
    URI; by default a SQLite file under `work`), the admin `admin` with that password (given
    through the environment, never a file), READ for other users by default."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    auth = []
    if admin_password:
        config = work / "basic_auth.ini"
        config.write_text(f"[mlflow]\ndefault_permission = READ\n"
                          "database_uri = "
                          f"{auth_store or f'sqlite:///{work}/basic_auth.db'}\n"
                          f"admin_username = {ADMIN}\n"
                          "authorization_function = "
                          "mlflow.server.auth:authenticate_request_basic_auth\n"
                          # a checked login is trusted for a minute per worker: without it
                          # every request hashes the password again (PBKDF2)
                          "auth_cache_ttl_seconds = 60\n")
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD=admin_password,
                   MLFLOW_FLASK_SERVER_SECRET_KEY=os.urandom(16).hex())
        auth = ["--app-name", "basic-auth"]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", backend, "--artifacts-destination",
         str(work / "artifacts"), *auth],
        stdout=(work / "server.log").open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True)
    try:
        wait_for_server(url)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:  # its answers are all in; a graceful stop waits on idle keep-alive connections
            server.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextmanager
def logged_in(user: str | None, password: str | None):
    """MLflow's client login, from the environment (as a job gets it), for this block."""
    keys = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: v for k, v in keys.items() if v is not None})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_load(writers: int, metrics: int, backend: str | None = None,
             work: Path | None = None, admin_password: str | None = None,
             threads: bool = False, auth_store: str | None = None) -> dict:
    """Start a server on `backend` (default: a fresh SQLite file; with `admin_password`,
    behind basic-auth with its logins in `auth_store`, the writers logging in as its admin),
    run the writers, count."""
    work = Path(work or tempfile.mkdtemp(prefix="la-load-"))
    backend = backend or f"sqlite:///{work}/mlflow.db"
    user = ADMIN if admin_password else None
    with mlflow_server(backend, work, admin_password, auth_store) as url, \
            logged_in(user, admin_password):
        return load(url, writers, metrics, backend, threads)


def load(url: str, writers: int, metrics: int, backend: str, threads: bool = False) -> dict:
    """The writers against the server at `url`, counted (the login, if any, from the
    environment): each a process, as a sweep's trials are, or with `threads` a thread of
    this process (the server sees the same concurrent requests; the tests take this to skip
    importing MLflow in 16 processes on 2 cores)."""
    import mlflow

    client = mlflow.MlflowClient(url)
    experiment_id = client.create_experiment(f"load-{time.time_ns()}")
    started = time.perf_counter()
    if threads:
        with ThreadPoolExecutor(writers) as pool:
            results = list(pool.map(lambda i: write(url, experiment_id, metrics, i),
                                    range(writers)))
    else:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, experiment_id,
                                   str(metrics), str(i)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(writers)]
        outputs = [p.communicate(timeout=1800) for p in procs]
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    seconds = time.perf_counter() - started

    def kept(r: dict) -> int:
        """What the server holds of one writer's run."""
        run = client.get_run(r["run_id"])
        history = client.get_metric_history(r["run_id"], "load/value")
        artifacts = [a.path for a in client.list_artifacts(r["run_id"])]
        return len(history) + len(run.data.params) + ("small.txt" in artifacts)

    with ThreadPoolExecutor(8) as pool:  # the count is not timed: read it back at once
        counts = list(pool.map(kept, results))
    stored = sum(counts)
    lost = sum(sum(r["ok"].values()) - n for r, n in zip(results, counts, strict=True))
    attempted = writers * (metrics + 10 + 1)
    errors = [e for r in results for e in r["errors"]]
    return {"writers": writers, "metrics_per_writer": metrics,
            "backend": backend.split(":")[0], "attempted": attempted, "stored": stored,
            "errors": len(errors), "lost": lost, "seconds": seconds,
            "writes_per_s": attempted / seconds, "first_errors": errors[:3]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--metrics", type=int, default=500)
    p.add_argument("--backend", default=None,
                   help="one backend store URI (default: SQLite, then a temporary PostgreSQL "
                        "behind basic-auth, side by side)")
    args = p.parse_args()
    if args.backend:
        outs = [run_load(args.writers, args.metrics, args.backend)]
    else:
        from local_postgres import sibling, temporary_postgres, unavailable

        outs = [run_load(args.writers, args.metrics)]
        why = unavailable()
        if why:
            print(f"PostgreSQL side skipped: {why}")
        else:
            with temporary_postgres("mlflow", "mlflow_auth") as uri:  # as cluster.yaml has it
                outs.append(run_load(args.writers, args.metrics, uri,
                                     admin_password=os.urandom(12).hex(),
                                     auth_store=sibling(uri, "mlflow_auth")))
                outs[-1]["backend"] += " + basic-auth"
    rows = [f"| {o['backend']} | {o['attempted']} | {o['stored']} | {o['errors']} | "
            f"{o['lost']} | {o['seconds']:.1f} | {o['writes_per_s']:.0f} |" for o in outs]
    section = (f"\n## Tracking under load ({datetime.now():%Y-%m-%d %H:%M}, "
               f"bench/tracking_load.py)\n\n"
               f"`mlflow server` (4 workers), {args.writers} writer processes x "
               f"({args.metrics} metrics + 10 params + 1 artifact), concurrently, on this "
               f"{os.cpu_count()}-core machine:\n\n"
               "| backend | attempted | stored | errors | lost | seconds | writes/s |\n"
               "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")
    for o in outs:
        print(json.dumps(o, indent=2))
        if o["first_errors"]:
            section += (f"\nFirst errors ({o['backend']}): "
                        + "; ".join(f"`{e}`" for e in o["first_errors"]) + "\n")
    with (REPO / "bench" / "RESULTS.md").open("a") as f:
        f.write(section)


if __name__ == "__main__":
    main()
