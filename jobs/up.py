"""`latentatlas up` / `latentatlas down`: a local Ray instance that outlives one command. Every
command started in this folder joins it (Ray's start, 5-10 s, is paid once) until `down`."""

from __future__ import annotations

import argparse
import sys

from latentatlas.command import guarded


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas up", description=__doc__)
    p.add_argument("--cpus", type=int, default=None, help="CPUs it offers (default: all)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs it offers (default: Ray's "
                   "detection)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)

    def run() -> int:
        from latentatlas import session

        running = session.current()
        s = running or session.start(args.cpus, args.gpus)
        print(f"{'already running' if running else 'started'}: Ray at {s.gcs} with {s.cpus} "
              f"CPUs (dashboard {s.dashboard}); commands in this folder use it until "
              "`latentatlas down`")
        return 0

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
