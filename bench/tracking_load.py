"""Many writers against one `mlflow server`, as a sweep's trials log at once on a cluster.

N processes each create a run and log M metrics (one request each, as training does per
epoch), 10 params and a small artifact, concurrently, against a real `mlflow server` with
its default 4 workers on the backend store given (SQLite, as cluster.yaml starts it, or
PostgreSQL). Counted: requests that raised (after MLflow's own retries), writes that
succeeded but are not in the store (lost), and writes per second.

    python bench/tracking_load.py [--writers 16] [--metrics 500] [--backend sqlite|URI]
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
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WRITER = """
import json, sys, time
import mlflow
uri, experiment_id, metrics, index = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = mlflow.MlflowClient(uri)
run_id = client.create_run(experiment_id, run_name=f"writer-{index}").info.run_id
ok = {"metric": 0, "param": 0, "artifact": 0}
errors = []
for step in range(metrics):
    try:
        client.log_metric(run_id, "load/value", float(step), step=step)
        ok["metric"] += 1
    except Exception as e:
        errors.append(type(e).__name__ + ": " + str(e).splitlines()[0][:120])
for i in range(10):
    try:
        client.log_param(run_id, f"p{i}", i)
        ok["param"] += 1
    except Exception as e:
        errors.append(type(e).__name__ + ": " + str(e).splitlines()[0][:120])
try:
    client.log_text(run_id, "x" * 1000, "small.txt")
    ok["artifact"] += 1
except Exception as e:
    errors.append(type(e).__name__ + ": " + str(e).splitlines()[0][:120])
client.set_terminated(run_id)
print(json.dumps({"run_id": run_id, "ok": ok, "errors": errors}))
"""


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


def run_load(writers: int, metrics: int, backend: str | None = None,
             work: Path | None = None) -> dict:
    """Start a server on `backend` (default: a fresh SQLite file), run the writers, count."""
    import mlflow

    work = Path(work or tempfile.mkdtemp(prefix="la-load-"))
    backend = backend or f"sqlite:///{work}/mlflow.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend, "--artifacts-destination", str(work / "artifacts")],
        stdout=(work / "server.log").open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True)
    try:
        wait_for_server(url)
        client = mlflow.MlflowClient(url)
        experiment_id = client.create_experiment(f"load-{time.time_ns()}")
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, experiment_id,
                                   str(metrics), str(i)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(writers)]
        outputs = [p.communicate(timeout=1800) for p in procs]
        seconds = time.perf_counter() - started
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        stored = lost = 0
        for r in results:
            run = client.get_run(r["run_id"])
            history = client.get_metric_history(r["run_id"], "load/value")
            artifacts = [a.path for a in client.list_artifacts(r["run_id"])]
            kept = len(history) + len(run.data.params) + ("small.txt" in artifacts)
            stored += kept
            lost += sum(r["ok"].values()) - kept
        attempted = writers * (metrics + 10 + 1)
        errors = [e for r in results for e in r["errors"]]
        return {"writers": writers, "metrics_per_writer": metrics,
                "backend": backend.split(":")[0], "attempted": attempted, "stored": stored,
                "errors": len(errors), "lost": lost, "seconds": seconds,
                "writes_per_s": attempted / seconds, "first_errors": errors[:3]}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--metrics", type=int, default=500)
    p.add_argument("--backend", default=None, help="backend store URI (default: SQLite)")
    args = p.parse_args()
    out = run_load(args.writers, args.metrics, args.backend)
    print(json.dumps(out, indent=2))
    section = (f"\n## Tracking under load ({datetime.now():%Y-%m-%d %H:%M}, "
               f"bench/tracking_load.py)\n\n"
               f"`mlflow server` (4 workers) on {out['backend']}, {out['writers']} writer "
               f"processes x ({out['metrics_per_writer']} metrics + 10 params + 1 artifact), "
               f"concurrently, on this 2-core machine:\n\n"
               f"| attempted | stored | errors | lost | seconds | writes/s |\n"
               f"| --- | --- | --- | --- | --- | --- |\n"
               f"| {out['attempted']} | {out['stored']} | {out['errors']} | {out['lost']} | "
               f"{out['seconds']:.1f} | {out['writes_per_s']:.0f} |\n")
    if out["first_errors"]:
        section += "\nFirst errors: " + "; ".join(f"`{e}`" for e in out["first_errors"]) + "\n"
    with (REPO / "bench" / "RESULTS.md").open("a") as f:
        f.write(section)


if __name__ == "__main__":
    main()
