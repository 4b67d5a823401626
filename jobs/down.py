"""`latentatlas down`: stop this folder's Ray instance started by `latentatlas up`."""

from __future__ import annotations

import argparse
import sys

from latentatlas.command import guarded


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas down", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)

    def run() -> int:
        from latentatlas import session

        stopped = session.stop()
        print(f"stopped Ray at {stopped.gcs}" if stopped else "no Ray of `latentatlas up` "
              "runs in this folder")
        return 0

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
