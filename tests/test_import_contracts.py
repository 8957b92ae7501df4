"""The import-linter contracts of pyproject.toml hold: layers point one way, no import cycle, MLflow only on top."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from importlinter.api import read_configuration

ROOT = Path(__file__).resolve().parents[1]
# lint-imports puts its working directory first on sys.path, so it reads the package of the folder it runs in
_LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def _lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _LINT], cwd=folder, capture_output=True, text=True, timeout=600)


def test_every_contract_is_kept():
    contracts = read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"]
    assert {"layers", "acyclic", "no-mlflow-below-inference"} <= {c["id"] for c in contracts}
    result = _lint(ROOT)
    output = " ".join((result.stdout + result.stderr).split())  # the report wraps long names over lines
    assert result.returncode == 0, output
    for contract in contracts:
        assert f"{contract['name']} KEPT" in output


def test_an_upward_import_breaks_the_layers(tmp_path):
    shutil.copytree(ROOT / "monai_exudate", tmp_path / "monai_exudate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    selection = tmp_path / "monai_exudate" / "data" / "selection.py"
    selection.write_text(selection.read_text() + "\nfrom monai_exudate.engines.samples import sample_name  # noqa\n")
    result = _lint(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "monai_exudate.data.selection -> monai_exudate.engines.samples" in output
