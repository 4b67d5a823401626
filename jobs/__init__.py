"""Entrypoints: `python -m jobs.<verb>` == `latentatlas <verb>` == a Ray job."""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the uploaded tree may not be installed: make its
# engine importable from the source root (platform/ is a source root, never a package).
_ENGINE = Path(__file__).resolve().parent.parent / "platform"
if (_ENGINE / "latentatlas").is_dir() and str(_ENGINE) not in sys.path:
    sys.path.insert(1, str(_ENGINE))
