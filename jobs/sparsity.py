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

import argparse
import sys

from latentatlas.command import common_parser, guarded
from latentatlas.report import print_metrics, print_table


def parse(argv):
    from analysis.defaults import SparsityPlan

    d = SparsityPlan()
    p = argparse.ArgumentParser(prog="latentatlas sparsity", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--dataset", default="fashion-mnist", help="the dataset source")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of each split")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training before the noise")
    p.add_argument("--every", type=int, default=d.every,
                   help="minibatches between two points of the per-variable curves")
    p.add_argument("--probe", type=int, default=d.probe,
                   help="test images every measurement runs on")
    p.add_argument("--variable", type=int, default=None,
                   help="the variable to damage (default: the least informative active one "
                        "whose gain exceeds its KL)")
    p.add_argument("--noise-step", type=float, default=d.noise_step,
                   help="noise std added per increment")
    p.add_argument("--max-increments", type=int, default=d.max_increments,
                   help="noise increments, at most, before the variable collapses")
    p.add_argument("--hold-epochs", type=int, default=d.hold_epochs,
                   help="epochs at the last noise, at most, waiting for the collapse")
    p.add_argument("--revival-epochs", type=int, default=d.revival_epochs,
                   help="epochs without noise, at most, waiting for the revival")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the training and the noise")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs of the experiment's Ray task")
    p.add_argument("--use-gpu", action="store_true", help="train on one GPU")
    return p.parse_args(argv)


def plan_of(args):
    from analysis.defaults import SparsityPlan

    return SparsityPlan(epochs=args.epochs, every=args.every, probe=args.probe,
                        noise_step=args.noise_step, max_increments=args.max_increments,
                        hold_epochs=args.hold_epochs, revival_epochs=args.revival_epochs,
                        variable=args.variable, lr=args.lr, seed=args.seed)


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
        from latentatlas.runtime import init_ray
        from latentatlas.tracking import Recorder

        recorder = Recorder(args.tracking_uri, args.experiment)
        init_ray(args.ray_address)
        print_result(*steps.sparsity(recorder, plan_of(args), args.dataset,
                                     data_path=args.data_path, limit=args.limit,
                                     cpus=args.cpus, use_gpu=args.use_gpu))

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
