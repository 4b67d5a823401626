"""platform/ is a source root: the stdlib `platform` must win from the repo root and in Ray."""

import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO

STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()

PROBE = ("import platform, latentatlas; "
         "print(platform.system()); print(platform.__file__); print(latentatlas.__file__)")


def test_stdlib_platform_from_the_repo_root():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "Linux"
    assert Path(out[1]).resolve().parent == STDLIB
    assert Path(out[2]).resolve().is_relative_to(REPO / "platform")
    assert not (REPO / "platform" / "__init__.py").exists()


def test_stdlib_platform_inside_a_ray_task(ray_session, tmp_path):
    """In a Ray worker whose working directory is the repo (as under `--working-dir .`),
    a fresh import of `platform` resolves to the stdlib; a package named `platform`
    (the control) would shadow it."""
    shadow = tmp_path / "shadow"
    (shadow / "platform").mkdir(parents=True)
    (shadow / "platform" / "__init__.py").write_text("")

    @ray_session.remote
    def resolve(root):
        import importlib.machinery
        import os
        import platform

        before = os.getcwd()  # a pooled worker runs later tasks: its cwd is put back
        os.chdir(root)
        try:
            spec = importlib.machinery.PathFinder.find_spec("platform", ["", root, *sys.path])
            return platform.system(), spec.origin
        finally:
            os.chdir(before)

    system, origin = ray_session.get(resolve.remote(str(REPO)))
    assert system == "Linux" and Path(origin).resolve().parent == STDLIB
    _, shadowed = ray_session.get(resolve.remote(str(shadow)))
    assert shadowed == str(shadow / "platform" / "__init__.py")
