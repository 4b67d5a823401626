"""`latentatlas verify ENC ...`: check encodings against their manifests, checksums included,
and read every code (finite) and every index (each once). Prints one `error:` line per
problem and exits 2 when there is any; logs nothing to MLflow. `--write-manifest` adds a
manifest to an encoding written by an earlier version, once its shards pass those checks."""

from __future__ import annotations

import sys
from pathlib import Path

from latentatlas.command import guarded, verb_parser


def main(argv=None) -> int:
    p = verb_parser("latentatlas verify", __doc__)
    p.add_argument("encodings", nargs="+", metavar="ENC",
                   help="encoding directories written by `latentatlas encode`")
    p.add_argument("--write-manifest", action="store_true",
                   help="add a manifest to an encoding that has none (an earlier version's)")
    args = p.parse_args(argv)

    def run() -> int:
        from latentatlas.encode.manifest import MANIFEST_FILE, read_manifest
        from latentatlas.encode.store import verify, write_manifest

        failed = False
        for enc in args.encodings:
            if args.write_manifest:
                if (Path(enc) / MANIFEST_FILE).exists():
                    problems = verify(enc)
                    if not problems:
                        print(f"{enc}: has a manifest already; verified")
                else:
                    write_manifest(enc)  # a UserError: one line, exit 2
                    problems = []
                    print(f"{enc}: wrote {MANIFEST_FILE}")
            else:
                problems = verify(enc)
                if not problems:
                    listed = read_manifest(Path(enc))
                    print(f"{enc}: ok ({len(listed['shards'])} shards, {listed['rows']} rows, "
                          f"{listed['checksum']} checked)" if listed else
                          f"{enc}: ok by its footers and data, but it has no manifest; add one "
                          f"with `latentatlas verify --write-manifest {enc}`")
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            failed = failed or bool(problems)
        return 2 if failed else 0

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
