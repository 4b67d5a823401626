"""An encoding's manifest (`_manifest.json`): what was written, so that a reader knows when the
directory is not that any more (a truncated or deleted shard, one copied in from elsewhere,
a damaged `_common_metadata`).

It is written last, inside the temporary directory just before the rename that publishes
the encoding, and lists every shard (name, rows, bytes, sha256, index range) and every other
file (`_common_metadata`: bytes, sha256), the total row count and the index range. Opening an
encoding checks the cheap part (names, sizes, the rows, index ranges and schemas in the
Parquet footers); `latentatlas verify` also recomputes the checksums and reads every code.

Every check returns problems as one-line strings naming the file and what is wrong; callers
raise the first as a UserError (open) or print them all (verify)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_FILE = "_manifest.json"
MANIFEST_FORMAT = "latentatlas-encoding-manifest/1"
CHECKSUM = "sha256"
CODE_COLUMNS = ("mu", "logvar")  # float tensors: non-finite values are refused
UPGRADE_HINT = "latentatlas verify --write-manifest"


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Footer:
    """What a shard's Parquet footer says about it (read without touching its data)."""

    rows: int
    schema: pa.Schema
    first: int | None  # smallest and largest `index` (None: no statistics)
    last: int | None


def read_footer(path: Path) -> Footer | str:
    """The shard's footer, or a one-line problem when it cannot be read."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as e:
        return (f"shard {path.name}: not a readable Parquet file ({path.stat().st_size} bytes; "
                f"truncated or damaged: {first_line(e)})")
    names = meta.schema.names
    first = last = None
    if "index" in names and meta.num_row_groups:
        column = names.index("index")
        lows, highs = [], []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max:
                lows = []
                break
            lows.append(int(stats.min))
            highs.append(int(stats.max))
        if lows:
            first, last = min(lows), max(highs)
    return Footer(meta.num_rows, meta.schema.to_arrow_schema().remove_metadata(), first, last)


def first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def tensor_shape(field: pa.Field) -> tuple[int, ...] | None:
    """The per-row shape of one of Ray's tensor columns, or None for a plain column: from
    the type when Ray registered it with pyarrow, else from the field's extension metadata
    (reading an encoding need not import Ray)."""
    shape = getattr(field.type, "shape", None)
    meta = field.metadata or {}
    ext = meta.get(b"ARROW:extension:metadata")
    name = meta.get(b"ARROW:extension:name", b"").decode(errors="replace")
    # Ray's fixed-shape tensor types (v1, v2) and Arrow's own; not the variable-shaped one
    if shape is None and ext and (name.startswith("ray.data.arrow_tensor")
                                  or name == "arrow.fixed_shape_tensor"):
        try:
            raw = json.loads(ext)
            shape = raw.get("shape") if isinstance(raw, dict) else raw
        except ValueError:
            shape = None
    ok = isinstance(shape, list | tuple) and all(isinstance(n, int) for n in shape)
    return tuple(shape) if ok else None


def describe_field(field: pa.Field) -> str:
    """A column's type as a reader would say it: Ray's tensor columns by their shape."""
    shape = tensor_shape(field)
    if shape:
        return f"codes of width {shape[0]}" if len(shape) == 1 else \
            f"tensors of shape {tuple(shape)}"
    return str(field.type)


def schema_problem(name: str, schema: pa.Schema, expected: pa.Schema) -> str | None:
    """How a shard's columns differ from the encoding's (`_common_metadata`), or None."""
    if schema.equals(expected, check_metadata=True):
        return None
    have, want = set(schema.names), set(expected.names)
    if have != want:
        parts = []
        if want - have:
            parts.append(f"lacks column(s) {', '.join(sorted(want - have))}")
        if have - want:
            parts.append(f"has extra column(s) {', '.join(sorted(have - want))}")
        return f"shard {name}: {' and '.join(parts)} (a shard of another encoding?)"
    for field in expected:
        other = schema.field(field.name)
        if not other.equals(field, check_metadata=True):
            return (f"shard {name}: column {field.name} holds {describe_field(other)}, the "
                    f"encoding's holds {describe_field(field)} (a shard of another encoding?)")
    return f"shard {name}: its columns are not the encoding's (a shard of another encoding?)"


def index_problems(footers: dict[str, Footer], rows: int) -> list[str]:
    """Row count and index coverage across shards, from their footers: the total must be
    `rows`, the ranges disjoint (else duplicate indices) and within 0..rows-1."""
    problems = []
    total = sum(f.rows for f in footers.values())
    if total != rows:
        why = ("rows are missing: a shard deleted or truncated?" if total < rows
               else "extra rows: a shard copied in?")
        problems.append(f"the shards hold {total} rows but the encoding has {rows} ({why})")
    ranges = sorted((f.first, f.last, name) for name, f in footers.items()
                    if f.first is not None and f.rows)
    for (a0, a1, a), (b0, b1, b) in zip(ranges, ranges[1:], strict=False):
        if b0 <= a1:
            problems.append(f"duplicate indices: shards {a} ({a0}..{a1}) and {b} ({b0}..{b1}) "
                            "both hold indices in that range")
    for first, last, name in ranges:
        if first < 0 or last >= rows:
            problems.append(f"shard {name}: indices {first}..{last} lie outside the "
                            f"encoding's 0..{rows - 1} (a shard of another encoding?)")
    return problems


def read_manifest(path: Path) -> dict | None | str:
    """The manifest, None if there is none (an encoding of an earlier version), or a
    problem line."""
    file = path / MANIFEST_FILE
    if not file.exists():
        return None
    try:
        manifest = json.loads(file.read_text())
    except (ValueError, OSError) as e:
        return f"{MANIFEST_FILE}: damaged, not valid JSON ({first_line(e)})"
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or \
            not isinstance(manifest.get("shards"), list):
        return f"{MANIFEST_FILE}: not a manifest of format {MANIFEST_FORMAT}"
    return manifest


def file_problems(path: Path, manifest: dict, deep: bool) -> list[str]:
    """Names and sizes (and with `deep`, checksums) of the files against the manifest."""
    problems = []
    listed = {s["name"] for s in manifest["shards"]}
    for name in sorted(p.name for p in path.glob("*.parquet")):
        if name not in listed:
            problems.append(f"shard {name}: not in the manifest (copied in after writing?)")
    for entry in [*manifest.get("files", []), *manifest["shards"]]:
        name, kind = entry["name"], "shard" if entry in manifest["shards"] else "file"
        file = path / name
        if not file.is_file():
            held = (f" ({entry['rows']} rows, indices {entry['index'][0]}..{entry['index'][1]})"
                    if kind == "shard" and entry.get("index") else "")
            problems.append(f"{kind} {name}: missing{held}; the encoding is incomplete, "
                            "encode it again")
            continue
        size = file.stat().st_size
        if size != entry["bytes"]:
            problems.append(f"{kind} {name}: {size} bytes, the manifest says {entry['bytes']} "
                            f"({'truncated' if size < entry['bytes'] else 'changed'} after "
                            "writing)")
        elif deep and sha256(file) != entry[CHECKSUM]:
            problems.append(f"{kind} {name}: its {CHECKSUM} differs from the manifest's "
                            "(changed after writing)")
    return problems


def shard_problems(path: Path, manifest: dict | None, rows: int,
                   expected: pa.Schema | None) -> tuple[list[str], dict[str, Footer]]:
    """Footer checks of every shard present: readable, the encoding's columns, rows and
    index range as the manifest lists them (when there is one)."""
    problems, footers = [], {}
    listed = {s["name"]: s for s in (manifest or {}).get("shards", [])}
    for shard in sorted(path.glob("*.parquet")):
        footer = read_footer(shard)
        if isinstance(footer, str):
            problems.append(footer)
            continue
        footers[shard.name] = footer
        if expected is not None and (p := schema_problem(shard.name, footer.schema, expected)):
            problems.append(p)
        entry = listed.get(shard.name)
        if entry is None:
            continue
        if footer.rows != entry["rows"]:
            problems.append(f"shard {shard.name}: {footer.rows} rows, the manifest says "
                            f"{entry['rows']}")
        elif entry.get("index") and footer.first is not None and \
                [footer.first, footer.last] != list(entry["index"]):
            problems.append(f"shard {shard.name}: indices {footer.first}..{footer.last}, the "
                            f"manifest says {entry['index'][0]}..{entry['index'][1]} (a shard "
                            "of another encoding?)")
    if manifest is not None and manifest.get("rows") != rows:
        problems.append(f"{MANIFEST_FILE}: lists {manifest.get('rows')} rows but "
                        f"_common_metadata says {rows}")
    return problems, footers


def first_non_finite(arrays: dict[str, np.ndarray]) -> tuple[int, str, float] | None:
    """(item, column, value) of the first row whose codes hold NaN or inf, else None; the
    item is the row's `index` when the arrays have one, else its position."""
    for column in CODE_COLUMNS:
        values = arrays.get(column)
        if values is None or not np.issubdtype(values.dtype, np.floating) or not len(values):
            continue
        flat = values.reshape(len(values), -1)
        bad = ~np.isfinite(flat).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            index = arrays.get("index")
            row = int(rows[np.argmin(index[rows])]) if index is not None else int(rows[0])
            item = int(index[row]) if index is not None else row
            return item, column, float(flat[row][~np.isfinite(flat[row])][0])
    return None


def non_finite_problem(name: str, arrays: dict[str, np.ndarray]) -> str | None:
    """The first item whose codes hold NaN or inf, as a problem line."""
    bad = first_non_finite(arrays)
    if bad is None:
        return None
    item, column, value = bad
    return f"{name}: item {item} has non-finite codes ({column} holds {value})"


@dataclass
class Content:
    """What reading a whole shard found."""

    problems: list[str]
    index: np.ndarray | None
    non_finite: tuple[int, str, float] | None = None


def flat_values(column) -> tuple[np.ndarray, np.ndarray]:
    """A column of (tensor) rows as (every value, the row each value belongs to), read from
    its Arrow storage: no need for Ray's extension type (verify starts without Ray)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_fixed_size_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values, np.arange(len(values)) // array.type.list_size
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        offsets = array.offsets.to_numpy()
        values = array.flatten().to_numpy(zero_copy_only=False)
        rows = np.repeat(np.arange(len(array)), np.diff(offsets))
        return values, rows
    values = array.to_numpy(zero_copy_only=False)
    return values, np.arange(len(values))


def first_non_finite_arrow(table: pa.Table) -> tuple[int, str, float] | None:
    """`first_non_finite` on an Arrow table of `index` and code columns."""
    index = table.column("index").to_numpy() if "index" in table.column_names else None
    for column in CODE_COLUMNS:
        if column not in table.column_names:
            continue
        values, rows = flat_values(table.column(column))
        if not np.issubdtype(values.dtype, np.floating):
            continue
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            items = index[rows[bad]] if index is not None else rows[bad]
            first = int(np.argmin(items))
            return int(items[first]), column, float(values[bad[first]])
    return None


def content_problems(shard: Path) -> Content:
    """Reading every row group of a shard: the first non-finite code, and its index column
    (for the checks across shards)."""
    indices, bad = [], None
    try:
        file = pq.ParquetFile(shard)
        names = [c for c in ("index", *CODE_COLUMNS) if c in file.schema_arrow.names]
        for g in range(file.metadata.num_row_groups):
            table = file.read_row_group(g, columns=names)
            arrays = {"index": table.column("index").to_numpy()} if "index" in names else {}
            found = first_non_finite_arrow(table)
            if found and (bad is None or found[0] < bad[0]):
                bad = found
            if "index" in arrays:
                indices.append(arrays["index"])
    except (pa.ArrowException, OSError, ValueError) as e:
        return Content([f"shard {shard.name}: its data cannot be read (damaged: "
                        f"{first_line(e)})"], None)
    problems = [] if bad is None else [
        f"shard {shard.name}: item {bad[0]} has non-finite codes ({bad[1]} holds {bad[2]})"]
    return Content(problems, np.concatenate(indices) if indices else None, bad)


def duplicate_problem(indices: dict[str, np.ndarray], rows: int) -> str | None:
    """Across all shards: every index 0..rows-1 exactly once."""
    if not indices:
        return None
    owner = np.concatenate([np.full(len(v), i) for i, v in enumerate(indices.values())])
    index = np.concatenate(list(indices.values()))
    order = np.argsort(index, kind="stable")
    index, owner = index[order], owner[order]
    same = np.flatnonzero(np.diff(index) == 0)
    if len(same):
        names = list(indices)
        i = same[0]
        a, b = names[owner[i]], names[owner[i + 1]]
        if a == b:
            return f"duplicate indices: shard {a} holds index {int(index[i])} twice"
        return f"duplicate indices: shards {a} and {b} both hold index {int(index[i])}"
    if len(index) == rows and (index[0] != 0 or index[-1] != rows - 1):
        return f"indices run {int(index[0])}..{int(index[-1])}, not 0..{rows - 1}"
    return None


def build(path: Path) -> dict:
    """The manifest of the files in `path` as they are now (the writer's side)."""
    shards = []
    for shard in sorted(path.glob("*.parquet")):
        footer = read_footer(shard)
        if isinstance(footer, str):
            raise ValueError(footer)
        shards.append({"name": shard.name, "rows": footer.rows,
                       "bytes": shard.stat().st_size, CHECKSUM: sha256(shard),
                       "index": None if footer.first is None else [footer.first, footer.last]})
    files = [{"name": f.name, "bytes": f.stat().st_size, CHECKSUM: sha256(f)}
             for f in sorted(path.iterdir()) if f.is_file() and not f.name.endswith(".parquet")
             and f.name != MANIFEST_FILE and not f.name.startswith(".")]
    firsts = [s["index"][0] for s in shards if s["index"] and s["rows"]]
    lasts = [s["index"][1] for s in shards if s["index"] and s["rows"]]
    return {"format": MANIFEST_FORMAT, "checksum": CHECKSUM,
            "rows": sum(s["rows"] for s in shards),
            "index": [min(firsts), max(lasts)] if firsts else None,
            "files": files, "shards": shards}


def write(path: Path, manifest: dict) -> Path:
    """Into `path`, under a temporary name first: a reader never sees half a manifest."""
    tmp = path / f".{MANIFEST_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path / MANIFEST_FILE)
    return path / MANIFEST_FILE
