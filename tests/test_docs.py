"""The documentation: generated references match the code, every option and config key has
help text, and the site builds with `mkdocs build --strict` (broken links, pages missing
from the nav and bad mkdocstrings references fail)."""

import subprocess
import sys
from importlib.metadata import version

from conftest import REPO

from jobs import reference
from jobs.cli import VERBS


def test_generated_references_are_current():
    for name, text in reference.pages().items():
        committed = REPO / "docs" / "reference" / name
        assert committed.is_file() and committed.read_text() == text, (
            f"docs/reference/{name} is stale: run `make docs` (python -m jobs.reference "
            "docs/reference) and commit it")


def test_every_option_of_every_verb_has_help():
    for verb in VERBS:
        parser = reference.verb_parser(verb)
        missing = [a.option_strings or [a.dest] for a in reference.documented_actions(parser)
                   if not (a.help or "").strip()]
        assert not missing, f"latentatlas {verb}: options without help: {missing}"


def test_every_config_key_has_help():
    missing = []
    for title, model, prefix, _ in reference.config_schemas():
        missing += [f"{title}: {prefix}{name}" for name, field in model.model_fields.items()
                    if not (field.description or "").strip()]
    assert not missing, f"config keys without a docstring: {missing}"


def test_the_reference_reads_types_defaults_and_constraints():
    text = reference.config_reference()
    assert ("| `train.epochs` | int | `10` | > `0` | Passes over the training split (with "
            "until_settled: at most). |") in text
    assert "| `kl.policy` | `elbo` \\| `beta` \\| `balanced` \\| `split` | `balanced` |" in text
    cli = reference.cli_reference()
    assert "| `--gain-rows GAIN_ROWS` |  | Information gain over the first N rows only" in cli


def test_version_is_the_installed_one():
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "--version"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"latentatlas {version('latentatlas')}"


def test_the_site_builds_strict(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "count_sectors" in api  # mkdocstrings rendered the studies
