"""An encoding is a directory of Parquet shards plus `_common_metadata`, whose schema
metadata names the model URI, dataset, split and code version. Rows:
`index`, `label`, attributes, `mu` and `logvar` (float32 tensors of shape (d,)) for a VAE;
`mu` (the recovered code) and `inversion_mse` for a generator."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from latentatlas.errors import UserError

META_KEY = b"latentatlas"
META_FILE = "_common_metadata"


@dataclass(frozen=True)
class RowGroup:
    path: str
    group: int
    first: int | None  # smallest and largest `index` in the group (None: no statistics)
    last: int | None

    def overlaps(self, start: int, stop: int) -> bool:
        return self.first is None or (self.first < stop and self.last >= start)


@dataclass(frozen=True)
class EncodingMeta:
    """What an encoding encodes: the model, the data (dataset, split, path, limit) and the
    code version, stored as JSON in the directory's `_common_metadata`."""

    model_uri: str
    model_run_id: str | None
    dataset: str
    split: str
    data_path: str | None
    limit: int | None
    rows: int
    latent_dim: int
    version: str
    input_shape: tuple[int, ...] | None = None
    attributes: tuple[str, ...] = ()
    # "vae": codes are posterior means beside their log-variances; "gan": codes a generator
    # decodes (`model_uri`), recovered by a recoder (`encoder_uri`) and/or `refine_steps`
    # of gradient inversion, with each image's pixel MSE after inversion.
    family: str = "vae"
    encoder_uri: str | None = None
    refine_steps: int = 0

    @staticmethod
    def from_json(raw: dict, where: Path) -> EncodingMeta:
        names = {f.name for f in fields(EncodingMeta)}
        required = {f.name for f in fields(EncodingMeta) if f.default is MISSING}
        missing = sorted(required - set(raw))
        if missing:
            raise UserError(f"{where}: encoding metadata lacks {', '.join(missing)}")
        meta = {k: v for k, v in raw.items() if k in names}
        meta["attributes"] = tuple(meta.get("attributes") or ())
        if meta.get("input_shape") is not None:
            meta["input_shape"] = tuple(meta["input_shape"])
        return EncodingMeta(**meta)

    def to_json(self) -> dict:
        return {**asdict(self), "attributes": list(self.attributes),
                "input_shape": list(self.input_shape) if self.input_shape else None}

    def load_split(self):
        """The dataset split these codes were computed from, row for row."""
        from latentatlas.data import load_split

        return load_split(self.dataset, self.split, self.data_path, self.limit)


@dataclass(frozen=True)
class Encoding:
    path: Path
    meta: EncodingMeta

    @property
    def latent_dim(self) -> int:
        return self.meta.latent_dim

    @property
    def code_columns(self) -> list[str]:
        """The columns describing each row's code: `mu`, and `logvar` where there is one."""
        return ["mu", "logvar"] if self.meta.family == "vae" else ["mu"]

    def shards(self) -> list[str]:
        return sorted(str(p) for p in self.path.glob("*.parquet"))

    def row_groups(self) -> list[RowGroup]:
        """Every row group of every shard with the range of `index` it holds, from the
        footers' statistics: what lets a reader of one index range open only its groups."""
        groups = []
        for shard in self.shards():
            meta = pq.ParquetFile(shard).metadata
            column = meta.schema.names.index("index")
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(column).statistics
                known = stats is not None and stats.has_min_max
                groups.append(RowGroup(shard, g, int(stats.min) if known else None,
                                       int(stats.max) if known else None))
        return groups

    def dataset(self, **read_args):
        """A Ray Dataset over the shards (the path every analysis pipeline starts from)."""
        import ray.data

        return ray.data.read_parquet(self.shards(), **read_args)

    def arrays(self, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """All rows in memory, ordered by `index` (for small encodings and tests)."""
        import ray.data  # noqa: F401  (registers Ray's tensor extension type with pyarrow)

        tables = [pq.read_table(s, columns=columns) for s in self.shards()]
        out: dict[str, list[np.ndarray]] = {}
        for table in tables:
            for name in table.column_names:
                out.setdefault(name, []).append(column_to_numpy(table.column(name)))
        arrays = {k: np.concatenate(v) for k, v in out.items()}
        if "index" in arrays:
            order = np.argsort(arrays["index"], kind="stable")
            arrays = {k: v[order] for k, v in arrays.items()}
        return arrays


def column_to_numpy(column) -> np.ndarray:
    column = column.combine_chunks()
    if hasattr(column.type, "to_pandas_dtype") and hasattr(column, "to_numpy_ndarray"):
        return column.to_numpy_ndarray()
    try:
        return column.to_numpy(zero_copy_only=False)
    except Exception:
        return np.stack(column.to_pylist())


def open_encoding(path: str | Path) -> Encoding:
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir():
        raise UserError(f"{path}: encoding directory not found")
    if not meta_path.is_file():
        raise UserError(f"{path}: not a LatentAtlas encoding (no {META_FILE})")
    meta = pq.read_schema(meta_path).metadata or {}
    if META_KEY not in meta:
        raise UserError(f"{meta_path}: schema metadata lacks the '{META_KEY.decode()}' key")
    return Encoding(path, EncodingMeta.from_json(json.loads(meta[META_KEY]), meta_path))


def publish(tmp: Path, out: Path, meta: EncodingMeta) -> Encoding:
    """Write `_common_metadata` into the finished temp directory, then rename it into place:
    the output appears only once complete."""
    shards = sorted(tmp.glob("*.parquet"))
    if not shards:
        raise UserError(f"{out}: the encoding produced no shards")
    schema = pq.read_schema(shards[0])
    schema = schema.with_metadata({**(schema.metadata or {}),
                                   META_KEY: json.dumps(meta.to_json())})
    pq.write_metadata(schema, tmp / META_FILE)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old)
    else:
        os.rename(tmp, out)
    return open_encoding(out)


def temp_sibling(out: Path) -> Path:
    """A hidden folder beside `out` to write into before the rename; it names the writing
    process, so that what a killed writer left behind can be told apart and removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(out)
    return out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_dead_temps(out: Path) -> list[Path]:
    """Temp folders of `out` whose writing process is gone (killed mid-write)."""
    from latentatlas.runtime import process_alive

    removed = []
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2].split("-")[0]
        if not pid.isdigit() or not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed
