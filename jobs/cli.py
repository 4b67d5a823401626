"""`latentatlas <verb> ...`: each verb is `jobs.<verb>.main(argv)`; this file only dispatches."""

from __future__ import annotations

import importlib
import sys

VERBS = {
    "run": "the main job: the whole pipeline on the embedded default",
    "train": "train a model with Ray Train (CONFIG: a VAE, GAN, recoder, classifier, "
             "second stage)",
    "sweep": "a Ray Tune sweep over a base config (CONFIG), or --resume DIR",
    "invert-train": "train a recoder (image -> code) for a generator (--generator URI)",
    "encode": "a dataset's latent codes into Parquet (Ray Data; VAEs, or generators "
              "inverted)",
    "stats": "latent statistics, variance loss, information gain of an ENCODING",
    "sectors": "codes per sector of the k most informative variables of an ENCODING",
    "support-set": "one member per sector: the support set of an ENCODING",
    "relocate": "linear maps between latent spaces: --source ENC --target ENC, or --all",
    "translate-study": "every map family x anchor choice x budget for every ordered pair of "
                       "ENC ...: L, M, M / own, CKA, SVCCA",
    "range": "where a generator cannot reach: regeneration errors, missed sectors, P/R/D/C",
    "fid": "FID / KID / variance loss of a model's samples: prior, GMM, second stage",
    "regularisation": "the seed's pictures of sampling vs no sampling (3-D, 2-D latents)",
    "sparsity": "how latent variables die and revive: per-variable curves, the collapse "
                "experiment under noise",
    "claims": "the seed's claims of a main run judged again under the current rules "
              "(RUN_ID), or --rules",
    "report": "what a main run measured, as text or Markdown (RUN_ID; the docs' results "
              "page)",
    "runs": "the newest MLflow runs, a table per kind with its headline numbers",
    "verify": "check ENC ... against their manifests (sizes, rows, checksums, finite codes); "
              "--write-manifest adds one",
    "up": "start a local Ray that the commands in this folder share (until `down`)",
    "down": "stop this folder's Ray started by `up`",
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("latentatlas")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: pip install -e .)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        print(f"latentatlas {version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: latentatlas <verb> [options]\n\nverbs:")
        for verb, text in VERBS.items():
            print(f"  {verb:<12} {text}")
        print("\n`latentatlas <verb> --help` for a verb's options; `latentatlas --version`")
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}; verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jobs.{verb.replace('-', '_')}")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
