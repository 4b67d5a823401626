"""`latentatlas support-set ENCODING [--exclude attr=value]`: one random member of each
non-empty sector, filled up to the latent dimension from the most crowded sectors; reports
how far apart its images are (mean pairwise MSE) against random pairs."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from jobs.sectors import DEFAULT_K, DEFAULT_THRESHOLD, add_sector_args, compute_sectors
from latentatlas.cli import common_parser, guarded
from latentatlas.report import print_table


def exclusion_mask(enc, index: np.ndarray, exclude: str | None) -> np.ndarray | None:
    """True where a row may be selected; `exclude` is `attr=value` over a column of the
    encoding (an attribute such as Wearing_Hat, or label)."""
    from latentatlas.errors import UserError

    if not exclude:
        return None
    name, sep, raw = exclude.partition("=")
    if not sep:
        raise UserError(f"--exclude {exclude!r}: expected attr=value, e.g. Wearing_Hat=1")
    columns = ["label", *enc.meta.attributes]
    if name not in columns:
        raise UserError(f"--exclude {name}: the encoding {enc.path} has no such column; "
                        f"columns: {', '.join(columns)}")
    values = enc.arrays(["index", name])
    by_index = dict(zip(values["index"].tolist(), values[name].tolist(), strict=True))
    return np.array([str(by_index[i]) != raw for i in index.tolist()])


def select(s, size: int | None = None, exclude: str | None = None, seed: int = 0,
           eligible_index=None):
    """Row indices of a support set of computed sectors `s`, their sectors, and the mask
    of rows that could be chosen (`eligible_index(index) -> bool mask` restricts it)."""
    from analysis.sectors import select_support

    eligible = exclusion_mask(s.encoding, s.index, exclude)
    if eligible_index is not None:
        keep = eligible_index(s.index)
        eligible = keep if eligible is None else eligible & keep
    pos = select_support(s.ids, size or s.encoding.latent_dim, seed, eligible)
    return s.index[pos], s.ids[pos], eligible


def support_set(encoding_path: str, *, size: int | None = None, exclude: str | None = None,
                k: int = DEFAULT_K, threshold: float = DEFAULT_THRESHOLD, seed: int = 0,
                tracking_uri: str | None = None, experiment: str | None = None,
                parent_run_id: str | None = None):
    import tempfile
    from pathlib import Path

    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis.sectors import mean_pairwise_mse, random_pairs_mse
    from latentatlas import tracking
    from latentatlas.images import image_grid

    tracking.setup(tracking_uri, experiment)
    s = compute_sectors(encoding_path, k, threshold)
    index, sectors_of, eligible = select(s, size, exclude, seed)
    meta = s.encoding.meta
    split = meta.load_split()
    if len(index) < 2:
        from latentatlas.errors import UserError

        raise UserError(f"{encoding_path}: only {len(index)} eligible code(s) lie in any "
                        f"sector at threshold {threshold}; lower --threshold or --k")
    images = split.images[index].astype(np.float32) / 255
    pool = split.images[s.index if eligible is None else s.index[eligible]]
    pairs = len(index) * (len(index) - 1) // 2
    metrics = {"support/size": len(index), "support/pairwise_mse": mean_pairwise_mse(images),
               "support/random_pairwise_mse": random_pairs_mse(
                   pool.astype(np.float32) / 255, max(pairs, 1), seed)}
    with mlflow.start_run(run_name="support-set", parent_run_id=parent_run_id
                          or meta.model_run_id) as run:
        mlflow.set_tags({"latentatlas.kind": "support-set", "encoding": str(s.encoding.path)})
        mlflow.log_params({"ordering": s.ordering, "k": s.k, "threshold": threshold,
                           "exclude": exclude or "", "seed": seed})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            table = pa.table({"index": index, "sector": sectors_of,
                              "image": list(split.images[index].reshape(len(index), -1))})
            pq.write_table(table, Path(tmp) / "support_set.parquet")
            mlflow.log_artifact(str(Path(tmp) / "support_set.parquet"))
        tracking.log_image(image_grid(images, ncols=16), "support_set")
    return run.info.run_id, metrics, index


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas support-set", parents=[common_parser()],
                                description=__doc__)
    add_sector_args(p)
    p.add_argument("--size", type=int, default=None, help="default: the latent dimension")
    p.add_argument("--exclude", default=None, help="attr=value rows are never chosen "
                   "(e.g. Wearing_Hat=1 for the seed's hat-free CelebA set)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    def run():
        from latentatlas.runtime import init_ray

        init_ray(args.ray_address)
        run_id, metrics, index = support_set(
            args.encoding, size=args.size, exclude=args.exclude, k=args.k,
            threshold=args.threshold, seed=args.seed, tracking_uri=args.tracking_uri,
            experiment=args.experiment)
        print(f"support set rows: {index.tolist()}")
        print_table([metrics], title="support set")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
