"""Layers, one direction: jobs/ (verbs) -> analysis/ (the science) -> platform/latentatlas/
(the engine). Every import of every module is checked, those inside functions included
(most imports here are deferred to keep start-up fast)."""

import ast
from pathlib import Path

from conftest import REPO

from jobs.cli import VERBS

# What each layer may not import: nothing upward, no MLflow in the science (studies return
# results; the recorder in the platform writes them), and no verb imports another verb
# (they share jobs/steps.py instead).
FORBIDDEN = {
    "latentatlas": ("analysis", "jobs"),
    "analysis": ("jobs", "mlflow", "latentatlas.tracking"),
}
VERB_MODULES = {f"jobs.{verb.replace('-', '_')}" for verb in VERBS}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in a file; `from a import b` yields a.b too,
    since b may be a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if rel.parts[0] == "platform":
        rel = rel.relative_to("platform")
    return ".".join(rel.with_suffix("").parts).removesuffix(".__init__")


def upward_edges(root: Path) -> list[str]:
    found = []
    for folder in ("platform/latentatlas", "analysis", "jobs"):
        for path in sorted((root / folder).rglob("*.py")):
            name = module_name(path, root)
            layer = name.split(".")[0]
            for line, target in imported(path):
                bad = any(target == f or target.startswith(f + ".")
                          for f in FORBIDDEN.get(layer, ()))
                other_verb = (layer == "jobs" and target in VERB_MODULES and target != name)
                if bad or other_verb:
                    found.append(f"{path.relative_to(root)}:{line} imports {target}")
    return found


def test_no_module_imports_upward():
    assert upward_edges(REPO) == []


def test_the_check_finds_upward_edges(tmp_path):
    files = {
        "platform/latentatlas/train.py": "def f():\n    from analysis.figures import x\n",
        "analysis/study.py": "import mlflow\nfrom latentatlas import record\n",
        "jobs/run.py": "from jobs import steps\nfrom jobs.stats import main\n",
        "jobs/steps.py": "from analysis.studies import maps\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert upward_edges(tmp_path) == [
        "platform/latentatlas/train.py:2 imports analysis.figures",
        "platform/latentatlas/train.py:2 imports analysis.figures.x",
        "analysis/study.py:1 imports mlflow",
        "jobs/run.py:2 imports jobs.stats",
    ]
