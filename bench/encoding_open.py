"""The cost of the manifest check when an encoding is opened (10k rows, 16 variables):
`open_encoding` against reading `_common_metadata` alone (what it did before manifests), an
encoding without a manifest, `verify` (checksums, every code) and reading every code.
Medians. Run: `.venv/bin/python bench/encoding_open.py` (`LATENTATLAS_SHARD_ROWS=1250` for
8 shards). Prints one line; RESULTS.md's section is written by hand."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]


def median_s(fn, n: int = 15) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import mlflow
    import pyarrow.parquet as pq
    from conftest import make_idx_dataset

    from latentatlas import model_store, tracking_store
    from latentatlas.config import DenseVAEConfig
    from latentatlas.encode import store
    from latentatlas.encode.pipeline import encode
    from latentatlas.models import build_model

    root = Path(tempfile.mkdtemp(prefix="la-open-"))
    tracking_store.setup(f"sqlite:///{root}/mlflow.db", "bench")
    data = make_idx_dataset(root / "idx", n_train=20, n_test=10_000, gz=False)
    cfg = DenseVAEConfig(hidden=[64], latent_dim=16)
    with mlflow.start_run() as run:
        model_store.log_model(build_model(cfg, (1, 28, 28)), cfg.model_dump(), (1, 28, 28))
    enc = encode(f"runs:/{run.info.run_id}/model", "mnist", "test", root / "enc",
                 data_path=str(data))
    legacy = root / "legacy"
    shutil.copytree(enc.path, legacy)
    (legacy / "_manifest.json").unlink()

    def metadata_only():
        meta = pq.read_schema(enc.path / "_common_metadata").metadata
        return store.EncodingMeta.from_json(json.loads(meta[b"latentatlas"]), enc.path)

    with contextlib.redirect_stderr(io.StringIO()):  # the legacy encoding's warning
        before = median_s(metadata_only)
        checked = median_s(lambda: store.open_encoding(enc.path))
        old = median_s(lambda: store.open_encoding(legacy))
        deep = median_s(lambda: store.verify(enc.path), 7)
        read = median_s(lambda: enc.arrays(["index", "mu", "logvar"]), 7)
    shards = len(enc.shards())
    print(f"10000 rows x 16, {shards} shard(s): metadata only {before * 1e3:.2f} ms, open with "
          f"manifest check {checked * 1e3:.2f} ms, open without manifest {old * 1e3:.2f} ms, "
          f"verify {deep * 1e3:.1f} ms, read every code {read * 1e3:.1f} ms")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
