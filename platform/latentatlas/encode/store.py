"""An encoding is a directory of Parquet shards plus `_common_metadata`, whose schema
metadata names the model URI, dataset, split and code version. Rows:
`index`, `label`, attributes, `mu` and `logvar` (float32 tensors of shape (d,)) for a VAE;
`mu` (the recovered code) and `inversion_mse` for a generator. `_manifest.json`
(manifest.py), written last, lists what was written; opening checks the files against it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from latentatlas.encode import manifest as mf
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
    # The generator maps its noise to W (a style generator) and the codes are w: the
    # authors relocate such a space by generated pairs (analysis.studies.maps.default_fit).
    style_based: bool | None = False  # None: not recorded (an older generator's encoding)

    @staticmethod
    def from_json(raw: dict, where: Path) -> EncodingMeta:
        names = {f.name for f in fields(EncodingMeta)}
        required = {f.name for f in fields(EncodingMeta) if f.default is MISSING}
        missing = sorted(required - set(raw))
        if missing:
            raise UserError(f"{where}: encoding metadata lacks {', '.join(missing)}")
        meta = {k: v for k, v in raw.items() if k in names}
        meta["attributes"] = tuple(meta.get("attributes") or ())
        if meta.get("family") == "gan" and "style_based" not in meta:
            meta["style_based"] = None  # written before encodings said: the model decides
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
        """A Ray Dataset over the shards (the path every analysis pipeline starts from);
        a batch whose codes hold NaN or inf stops the pipeline with one error line."""
        import ray.data

        return ray.data.read_parquet(self.shards(), **read_args).map_batches(
            refuse_non_finite_batch, batch_format="numpy", batch_size=None,
            fn_kwargs={"where": str(self.path)})

    def arrays(self, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """All rows in memory, ordered by `index` (for small encodings and tests); codes
        holding NaN or inf, or an index held twice, are one error line."""
        out: dict[str, list[np.ndarray]] = {}
        for shard in self.shards():
            try:
                table = pq.read_table(shard, columns=columns)
            except (pa.ArrowException, OSError) as e:
                raise UserError(f"{self.path}: shard {Path(shard).name}: its data cannot be "
                                f"read (damaged: {mf.first_line(e)})") from None
            arrays = table_to_numpy(table)
            if problem := mf.non_finite_problem(f"shard {Path(shard).name}", arrays):
                raise UserError(f"{self.path}: {problem}; encode it again from a model "
                                "whose codes are finite")
            for name, values in arrays.items():
                out.setdefault(name, []).append(values)
        arrays = {k: np.concatenate(v) for k, v in out.items()}
        if "index" in arrays:
            order = np.argsort(arrays["index"], kind="stable")
            arrays = {k: v[order] for k, v in arrays.items()}
            same = np.flatnonzero(np.diff(arrays["index"]) == 0)
            if len(same):
                raise UserError(f"{self.path}: duplicate indices: index "
                                f"{int(arrays['index'][same[0]])} is held twice")
        return arrays


def table_to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    """Every column as numpy; Ray's tensor columns as (rows, *shape), read from their Arrow
    storage whether or not Ray has registered its type (the verbs on small encodings start
    no Ray and do not import it)."""
    out = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        shape = mf.tensor_shape(field)
        if shape is None:
            out[field.name] = column.to_numpy()
        else:
            values, _ = mf.flat_values(column)
            out[field.name] = values.reshape(len(column), *shape)
    return out


WARNED: set[Path] = set()  # encodings without a manifest already warned about


def open_encoding(path: str | Path) -> Encoding:
    """The encoding at `path`, its files checked against its manifest (names, sizes, and the
    rows, index ranges and columns in the Parquet footers): what is not as written is one
    error line naming the file. An encoding of an earlier version (no manifest) opens with a
    warning, its footers checked against its own metadata (rows, index ranges, columns)."""
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir():
        raise UserError(f"{path}: encoding directory not found")
    if not meta_path.is_file():
        raise UserError(f"{path}: not a LatentAtlas encoding (no {META_FILE})")
    manifest = mf.read_manifest(path)
    if isinstance(manifest, str):
        raise UserError(f"{path}: {manifest}")
    if manifest is not None and (problems := mf.file_problems(path, manifest, deep=False)):
        raise UserError(first_of(path, problems))
    meta, schema = read_meta(path)
    problems, footers = mf.shard_problems(path, manifest, meta.rows, schema)
    problems += mf.index_problems(footers, meta.rows)
    if problems:
        raise UserError(first_of(path, problems))
    if manifest is None and path.resolve() not in WARNED:
        WARNED.add(path.resolve())
        print(f"warning: {path}: no manifest (an encoding of an earlier version): its shards "
              f"cannot be checked against what was written; add one with "
              f"`{mf.UPGRADE_HINT} {path}`", file=sys.stderr)
    return Encoding(path, meta)


def first_of(path: Path, problems: list[str]) -> str:
    more = (f" (and {len(problems) - 1} more problem(s): `latentatlas verify {path}` lists "
            "them)") if len(problems) > 1 else ""
    return f"{path}: {problems[0]}{more}"


def read_meta(path: Path) -> tuple[EncodingMeta, pa.Schema]:
    """The encoding's metadata and the schema its shards share, from `_common_metadata`."""
    meta_path = path / META_FILE
    try:
        schema = pq.read_schema(meta_path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: {META_FILE}: not a Parquet metadata file (damaged: "
                        f"{mf.first_line(e)})") from None
    meta = schema.metadata or {}
    if META_KEY not in meta:
        raise UserError(f"{meta_path}: schema metadata lacks the '{META_KEY.decode()}' key")
    try:
        raw = json.loads(meta[META_KEY])
    except ValueError as e:
        raise UserError(f"{meta_path}: the '{META_KEY.decode()}' metadata is not valid JSON "
                        f"({mf.first_line(e)})") from None
    return EncodingMeta.from_json(raw, meta_path), schema.remove_metadata()


def verify(path: str | Path) -> list[str]:
    """Every problem of the encoding at `path`, one line each (empty: it is what was
    written): what `open_encoding` checks, and the checksums, every code finite, every index
    0..rows-1 once."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path}: encoding directory not found"]
    if not (path / META_FILE).is_file():
        return [f"{path}: not a LatentAtlas encoding (no {META_FILE})"]
    manifest = mf.read_manifest(path)
    if isinstance(manifest, str):
        return [f"{path}: {manifest}"]
    problems = [] if manifest is None else mf.file_problems(path, manifest, deep=True)
    try:
        meta, schema = read_meta(path)
    except UserError as e:
        return [*(f"{path}: {p}" for p in problems), str(e)]
    found, footers = mf.shard_problems(path, manifest, meta.rows, schema)
    listed = bool(problems)  # a missing or changed file explains the row counts below
    problems += [p for p in found if p not in problems]
    if not listed:
        problems += mf.index_problems(footers, meta.rows)
    indices = {}
    for name in footers:
        content = mf.content_problems(path / name)
        problems += content.problems
        if content.index is not None:
            indices[name] = content.index
    if (p := mf.duplicate_problem(indices, meta.rows)) and not any(
            x.startswith("duplicate indices") for x in problems):
        problems.append(p)
    return [f"{path}: {p}" for p in problems]


def write_manifest(path: str | Path) -> Path:
    """Add a manifest to an encoding of an earlier version, once its shards pass every
    check that does not need one (footers, every code finite, every index once)."""
    path = Path(path)
    if problems := verify(path):
        raise UserError(first_of(path, [p.removeprefix(f"{path}: ") for p in problems]))
    meta, _ = read_meta(path)
    manifest = mf.build(path)
    if manifest["rows"] != meta.rows:
        raise UserError(f"{path}: the shards hold {manifest['rows']} rows, not {meta.rows}")
    return mf.write(path, manifest)


def refuse_non_finite(tmp: Path, meta: EncodingMeta) -> None:
    """Before publishing: codes with NaN or inf (a diverged model, broken weights) and
    indices held twice are refused, naming the first item and the model."""
    indices, worst = {}, None
    for shard in sorted(tmp.glob("*.parquet")):
        content = mf.content_problems(shard)
        if content.index is None and content.problems:
            raise UserError(f"{meta.model_uri}: {content.problems[0]}")
        if content.non_finite and (worst is None or content.non_finite[0] < worst[0]):
            worst = content.non_finite
        if content.index is not None:
            indices[shard.name] = content.index
    if worst:
        item, column, value = worst
        raise UserError(f"--model {meta.model_uri}: the codes of item {item} of "
                        f"{meta.dataset}:{meta.split} are not finite ({column} holds {value}): "
                        "a diverged model or broken weights; nothing was written")
    if problem := mf.duplicate_problem(indices, meta.rows):
        raise UserError(f"--model {meta.model_uri}: the encoder wrote {problem}; nothing was "
                        "written")


def publish(tmp: Path, out: Path, meta: EncodingMeta) -> Encoding:
    """Check the codes, write `_common_metadata` into the finished temp directory and then
    the manifest (last), then rename it into place: the output appears only once complete."""
    shards = sorted(tmp.glob("*.parquet"))
    if not shards:
        raise UserError(f"{out}: the encoding produced no shards")
    # a folder removed under running writers, which made it again: rows went to the old one
    written = sum(pq.read_metadata(s).num_rows for s in shards)
    if written != meta.rows:
        raise UserError(f"{out}: {written} of {meta.rows} rows were written (its folder was "
                        "removed, or its disk failed, while it was written); nothing was "
                        "published")
    refuse_non_finite(tmp, meta)
    schema = pq.read_schema(shards[0])
    schema = schema.with_metadata({**(schema.metadata or {}),
                                   META_KEY: json.dumps(meta.to_json())})
    pq.write_metadata(schema, tmp / META_FILE)
    mf.write(tmp, mf.build(tmp))
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
    from latentatlas.environment import process_alive

    removed = []
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2].split("-")[0]
        if not pid.isdigit() or not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def refuse_non_finite_batch(batch: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """A Ray Data block of an encoding, passed on when its codes are finite."""
    if problem := mf.non_finite_problem("a block", batch):
        raise UserError(f"{where}: {problem}; encode it again from a model whose codes are "
                        "finite")
    return batch
