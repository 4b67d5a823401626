"""`latentatlas invert-train --generator URI [CONFIG]`: train the seed's recoder, a conv
encoder from a generator's images back to their codes (z of a DCGAN, w of a style
generator), on a never-ending stream of pairs the workers generate (Ray Train).
Without CONFIG: the defaults of jobs/configs/fmnist_recoder.yaml."""

from __future__ import annotations

import sys

from latentatlas.command import add_overrides, guarded, verb_parser
from latentatlas.report import print_trained


def parse(argv):
    p = verb_parser("latentatlas invert-train", __doc__)
    p.add_argument("config", nargs="?", help="a recoder YAML (model.name: recoder)")
    p.add_argument("--generator", required=True, metavar="URI",
                   help="the dcgan / style_gan model to invert, e.g. runs:/<id>/model")
    add_overrides(p)
    return p.parse_args(argv)


def run(args) -> int:
    from latentatlas.config import apply_overrides, read_yaml, validate
    from latentatlas.train.runner import train

    source = args.config or "invert-train defaults"
    raw = read_yaml(args.config) if args.config else {"name": "recoder",
                                                       "model": {"name": "recoder"}}
    raw = apply_overrides(raw, [*args.overrides, f"invert.generator={args.generator}"])
    cfg = validate(raw, source)
    out = train(cfg, tracking_uri=args.tracking_uri, experiment=args.experiment,
                command=args.command,
                ray_address=args.ray_address)
    print_trained(out, cfg.name, "invert-train")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
