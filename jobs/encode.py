"""`latentatlas encode --model URI --data NAME[:split] --out DIR`: a dataset's latent codes
by Ray Data batch inference, written as Parquet shards. A VAE encodes itself; a generator
(dcgan, style_gan) is inverted: `--recoder URI` guesses each code, `--refine STEPS` of
gradient inversion improve the guess (or start from the mean code without a recoder)."""

from __future__ import annotations

import sys

from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import Progress, print_table

FLAGS = {"refine_steps": "--refine"}
STUDY_ONLY = ("split",)  # the verb's split is its --data address's


def parse(argv):
    from jobs.kinds.encode import EncodeOptions

    p = verb_parser("latentatlas encode", __doc__)
    p.add_argument("--model", required=True, help="runs:/<id>/model or models:/<name>/<v>")
    p.add_argument("--data", required=True, help="dataset[:split], e.g. fashion-mnist:test")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--out", required=True, help="output directory (appears once complete)")
    p.add_argument("--limit", type=int, default=None, help="first N items")
    p.add_argument("--recoder", default=None, metavar="URI",
                   help="a recoder trained on the generator given as --model")
    add_options(p, EncodeOptions, flags=FLAGS, skip=STUDY_ONLY)
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    return p.parse_args(argv)


def run(args) -> int:
    from jobs.kinds.encode import EncodeOptions
    from latentatlas.data import parse_data_address
    from latentatlas.encode.pipeline import encode
    from latentatlas.record import Record

    o = options_of(args, EncodeOptions, flags=FLAGS)
    refine = o.refinement()
    progress = Progress("encode")
    recorder = open_recorder(args)
    dataset, split = parse_data_address(args.data)
    progress(f"{dataset}:{split} through {args.model} (Ray Data; the directory appears "
             "when complete)")
    enc = encode(args.model, dataset, split, args.out, data_path=args.data_path,
                 limit=args.limit, batch_size=o.batch_size, actors=o.actors,
                 use_gpu=args.use_gpu, recoder_uri=args.recoder, refine=refine)
    progress(f"wrote {enc.meta.rows} codes to {enc.path}")
    metrics = {"encode/rows": enc.meta.rows}
    params = {"model_uri": args.model, "dataset": dataset, "split": split}
    if enc.meta.family == "gan":
        params.update(recoder_uri=args.recoder, refine_steps=refine.steps,
                      refine_lr=refine.lr, refine_loss=refine.loss)
        metrics["inversion/real_pixel_mse"] = float(enc.arrays(["inversion_mse"])[
            "inversion_mse"].mean())
    run_id = recorder.record(Record(
        "encode", f"encode {dataset}:{split}", tags={"encoding": str(enc.path)},
        params=params, metrics=metrics), enc.meta.model_run_id)
    print_table([{"encoding": str(enc.path), "rows": enc.meta.rows,
                  "latent_dim": enc.latent_dim, **{k: v for k, v in metrics.items()
                                                   if k.startswith("inversion/")}}],
                title="encode")
    print(f"MLflow run id: {run_id}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
