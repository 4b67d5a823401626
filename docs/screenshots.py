"""The MLflow UI screenshots in docs/images/, taken in headless Chromium (Debian's `chromium`).

    .venv/bin/python docs/screenshots.py [--store sqlite:///mlflow.db] [--port 5055]
                                         [--out docs/images] [--run RUN_ID]

Run it after `make run`, by hand: it is no part of `make docs` or of the tests (Chromium is
no dependency of the project; `apt-get install chromium`). It copies the store (a SQLite
file) to a temporary folder, adds to the copy an experiment `untagged` with one trivial
run (to compare with the main job's experiment, which carries `mlflow.experimentKind`),
serves the copy with `mlflow ui` on 127.0.0.1, drives Chromium over the DevTools protocol
(aiohttp's websocket client, installed with Ray), writes the PNGs and stops both. The
store itself is only read; the artifacts display from where the runs logged them.

Each page opens in a fresh browser profile. The first two are what a first visit shows;
the others are taken as after switching the sidebar to "Model training" and closing the
MLflow Assistant panel (both remembered by the browser), seeded in its local storage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1600, 1000
MAX_BYTES = 300_000

# what the page remembers in the browser (`<key>_v1`, JSON): the sidebar's GenAI / Model
# training switch, the Assistant panel and the one-time hints
TRAINING_VIEW = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.detectIssues.guidanceShown_v1": True,
}


@dataclass
class Shot:
    name: str
    path: str                    # after the hash: /experiments/1/runs
    wait_for: list[str]          # texts that show the page has loaded
    storage: dict = field(default_factory=dict)
    click: str | None = None     # JavaScript that clicks something, then wait_after
    wait_after: list[str] = field(default_factory=list)
    height: int = HEIGHT
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom (CSS pixels)
    scale: float = 0.75


class Chrome:
    """A minimal DevTools protocol client over one websocket (flattened sessions)."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, params: dict | None = None, session: str | None = None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.ws.send_str(json.dumps(message))
        while True:
            reply = json.loads((await self.ws.receive()).data)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, expression: str, session: str):
        result = await self.call("Runtime.evaluate", {"expression": expression,
                                                      "returnByValue": True}, session)
        return result.get("result", {}).get("value")

    async def wait_text(self, texts: list[str], session: str, timeout: float = 60) -> None:
        check = " && ".join(f"document.body.innerText.includes({json.dumps(t)})" for t in texts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.evaluate(f"!!document.body && {check}", session):
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"page never showed {texts}")


async def take(chrome: Chrome, base: str, shot: Shot, out: Path) -> Path:
    context = (await chrome.call("Target.createBrowserContext"))["browserContextId"]
    target = (await chrome.call("Target.createTarget", {"url": "about:blank",
                                                        "browserContextId": context}))["targetId"]
    session = (await chrome.call("Target.attachToTarget", {"targetId": target,
                                                           "flatten": True}))["sessionId"]
    try:
        await chrome.call("Page.enable", session=session)
        await chrome.call("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": shot.height, "deviceScaleFactor": 1, "mobile": False},
            session)
        if shot.storage:
            seed = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});"
                           for k, v in shot.storage.items())
            await chrome.call("Page.addScriptToEvaluateOnNewDocument",
                              {"source": f"try {{ {seed} }} catch (e) {{}}"}, session)
        await chrome.call("Page.navigate", {"url": f"{base}/#{shot.path}"}, session)
        await chrome.wait_text(shot.wait_for, session)
        if shot.click:
            if not await chrome.evaluate(shot.click, session):
                raise RuntimeError(f"{shot.name}: nothing to click")
            await chrome.wait_text(shot.wait_after, session)
        await asyncio.sleep(3)  # images, charts and fonts settle
        png = await chrome.call("Page.captureScreenshot", {"format": "png"}, session)
    finally:
        await chrome.call("Target.closeTarget", {"targetId": target})
        await chrome.call("Target.disposeBrowserContext", {"browserContextId": context})
    return save(base64.b64decode(png["data"]), shot, out)


def save(data: bytes, shot: Shot, out: Path) -> Path:
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    if shot.crop:
        image = image.crop(shot.crop)
    if shot.scale != 1:
        image = image.resize((round(image.width * shot.scale), round(image.height * shot.scale)),
                             Image.LANCZOS)
    path = out / f"{shot.name}.png"
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:  # a page of flat colours: a palette loses nothing seen
        image.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def click_text(text: str, selector: str = "button, a, [role=button], span") -> str:
    """JavaScript: click the first element matching `selector` whose own text is `text`."""
    return (f"(() => {{ const e = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.textContent.trim() === {json.dumps(text)});"
            " if (e) { e.click(); return true; } return false; })()")


def copy_store(store: str, tmp: Path) -> tuple[str, str]:
    """The store copied into tmp, with an experiment `untagged` and one run in it."""
    import mlflow

    if not store.startswith("sqlite:///"):
        sys.exit("--store: a sqlite:/// store (it is copied, not changed)")
    source = Path(store[len("sqlite:///"):])
    if not source.is_file():
        sys.exit(f"no store at {source}: run `make run` first")
    shutil.copy(source, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name("untagged")
    if found is None:
        untagged = client.create_experiment("untagged",
                                            artifact_location=(tmp / "untagged").as_uri())
    else:  # one made before: in the copy, without the kind
        untagged = found.experiment_id
        if "mlflow.experimentKind" in found.tags:
            client.delete_experiment_tag(untagged, "mlflow.experimentKind")
    run = client.create_run(untagged, run_name="trivial")
    client.log_param(run.info.run_id, "x", 1)
    client.log_metric(run.info.run_id, "y", 2.0)
    client.set_terminated(run.info.run_id)
    return uri, untagged


def pick_run(uri: str, experiment: str) -> tuple[str, str, str | None, str | None]:
    """The main job's experiment id, its first VAE training, the newest main run and its
    first relocation (None where the store has no main run)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        sys.exit(f"no experiment {experiment!r} in the store: run `make run` first")
    eid = found.experiment_id
    mains = client.search_runs([eid], "tags.`latentatlas.kind` = 'main'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    where = "tags.`latentatlas.kind` = 'train' and tags.`latentatlas.family` = 'vae'"
    if mains:
        where += f" and tags.`mlflow.parentRunId` = '{mains[0].info.run_id}'"
    trainings = client.search_runs([eid], where, order_by=["attributes.start_time ASC"],
                                   max_results=1)
    if not trainings:
        sys.exit("no VAE training in the store: run `make run` first")
    main_id = mains[0].info.run_id if mains else None
    moved = main_id and client.search_runs(
        [eid], f"tags.`latentatlas.kind` = 'relocate' and tags.`mlflow.parentRunId` = "
        f"'{main_id}'", order_by=["attributes.start_time ASC"], max_results=1)
    return eid, trainings[0].info.run_id, main_id, moved[0].info.run_id if moved else None


def serve(uri: str, port: int, log: Path) -> subprocess.Popen:
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_cli), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"mlflow ui stopped:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    stop(server)
    sys.exit(f"mlflow ui did not answer on port {port}:\n{log.read_text()[-2000:]}")


def browser(chromium: str, profile: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.is_file() and len(port_file.read_text().split()) == 2:
            port, path = port_file.read_text().split()
            return proc, f"ws://127.0.0.1:{port}{path}"
        time.sleep(0.2)
    stop(proc)
    sys.exit("chromium did not open its DevTools port")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def shots(name: str, eid: str, untagged: str, rid: str, main: str | None,
          moved: str | None) -> list[Shot]:
    run = f"/experiments/{eid}/runs/{rid}"
    study = [
        # the study's own page: its report as the description, the verdict counts as metrics
        Shot("mlflow-study", f"/experiments/{eid}/runs/{main}", ["Verdicts:", "verdicts/"],
             storage=TRAINING_VIEW, height=1400, scale=0.7)] if main else []
    if moved:  # a relocation's rows, named, large enough to read
        study.append(Shot("mlflow-relocation", f"/experiments/{eid}/runs/{moved}/artifacts/"
                          "relocation_rows.png", ["relocation_rows.png"],
                          storage=TRAINING_VIEW, crop=(0, 0, 1400, 700), scale=1))
    # the parent row's expander, which shows its child runs (the main job's steps)
    expander = ("(() => { const b = document.querySelector("
                "'.ag-row button[data-component-id*=runnamecellrenderer]');"
                " if (b) { b.click(); return true; } return false; })()")
    return [
        Shot("mlflow-experiment", f"/experiments/{eid}", ["Tool calls", "Detect Issues", name]),
        Shot("mlflow-untagged", f"/experiments/{untagged}",
             ["Tool calls", "Detect Issues", "untagged"]),
        Shot("mlflow-runs", f"/experiments/{eid}/runs", ["matching runs", "main"],
             storage=TRAINING_VIEW, click=expander, wait_after=["main-dense-s0"], height=1250,
             crop=(0, 0, WIDTH, 975)),
        Shot("mlflow-run", run, ["About this run", "Datasets"], storage=TRAINING_VIEW,
             height=1500, scale=0.7),
        Shot("mlflow-figure", f"{run}/artifacts/reconstructions.png",
             ["reconstructions.png", "samples.png"], storage=TRAINING_VIEW,
             crop=(0, 0, 1300, 400), scale=1),
        # the training's charts: its images over epochs and its system/* metrics
        Shot("mlflow-training-charts", f"{run}/model-metrics", ["reconstructions"],
             storage=TRAINING_VIEW, height=1400, scale=0.7),
        *study,
    ]


async def run_shots(ws_url: str, base: str, todo: list[Shot], out: Path) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        chrome = Chrome(ws)
        for shot in todo:
            path = await take(chrome, base, shot, out)
            print(f"{path}  ({path.stat().st_size // 1000} KB)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", default=f"sqlite:///{REPO / 'mlflow.db'}")
    p.add_argument("--experiment", default="latentatlas")
    p.add_argument("--run", help="the training run to show (default: the newest main job's "
                                 "first VAE training)")
    p.add_argument("--port", type=int, default=5055)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    p.add_argument("--only", nargs="*", help="these shots only (by file name without .png)")
    args = p.parse_args(argv)
    if not shutil.which(args.chromium):
        sys.exit("no chromium: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latentatlas-shots-") as tmp_name:
        tmp = Path(tmp_name)
        uri, untagged = copy_store(args.store, tmp)
        eid, rid, main, moved = pick_run(uri, args.experiment)
        rid = args.run or rid
        todo = [s for s in shots(args.experiment, eid, untagged, rid, main, moved)
                if not args.only or s.name in args.only]
        server = serve(uri, args.port, tmp / "mlflow-ui.log")
        try:
            chrome, ws_url = browser(args.chromium, tmp / "profile")
            try:
                asyncio.run(run_shots(ws_url, f"http://127.0.0.1:{args.port}", todo, args.out))
            finally:
                stop(chrome)
        finally:
            stop(server)
    version = subprocess.run([args.chromium, "--version"], capture_output=True, text=True)
    import mlflow

    print(f"MLflow {mlflow.__version__}, {version.stdout.strip()}, "
          f"{time.strftime('%Y-%m-%d')}: experiment {eid}, run {rid}")


if __name__ == "__main__":
    main()
