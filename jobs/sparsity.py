"""`latentatlas sparsity`: how latent variables die, and whether they come back (the seed's
sparsity post). Trains the seed's dense VAE (784-256-64-32-16, BCE + KL) and logs var(mu)
and mean(sigma^2) of every variable every --every minibatches (the post's Figure 1); then
damages one active variable with Gaussian noise of growing strength, one epoch per
increment, the inactive variables held inactive, until its reconstruction gain falls below
its KL term; keeps that noise until the variable is inactive; removes it and trains on until
the variable is active again (Figure 3). One MLflow run: the curves as metric histories,
both figures, a table per epoch, the final model, and the claim judged. As a Ray job:
`ray job submit --working-dir . -- python -m jobs.sparsity ...`."""

from __future__ import annotations

import sys

from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_metrics, print_table


def parse(argv):
    from jobs.kinds.sparsity import SparsityOptions

    p = verb_parser("latentatlas sparsity", __doc__)
    p.add_argument("--dataset", default="fashion-mnist", help="the dataset source")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    add_options(p, SparsityOptions)
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs of the experiment's Ray task")
    p.add_argument("--use-gpu", action="store_true", help="train on one GPU")
    return p.parse_args(argv)


def print_result(run_id: str, result, claim: dict) -> None:
    from jobs.verdicts import print_claims

    trained = result.plan.epochs
    print_table([{k: r[k] for k in ("epoch", "phase", "noise", "gain_nats", "kl", "var_mu",
                                    "mean_sigma2", "inactive")}
                 for r in result.epochs[trained - 1:]],
                title=f"variable {result.variable}: after training, then the experiment")
    print_metrics(result.metrics, "sparsity")
    print_claims([claim])
    print(f"MLflow run id: {run_id}")


def main(argv=None) -> int:
    args = parse(argv)

    def run():
        from jobs import steps
        from jobs.kinds.sparsity import SparsityOptions
        from latentatlas.runtime import init_ray

        recorder = open_recorder(args)
        init_ray(args.ray_address)
        o = options_of(args, SparsityOptions)
        print_result(*steps.sparsity(recorder, o.plan(), args.dataset,
                                     data_path=args.data_path, limit=o.limit,
                                     cpus=args.cpus, use_gpu=args.use_gpu))

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
