"""The layering of the package, as import-linter contracts in pyproject.toml: each layer
imports only those below it (so the HTTP core, the providers and the images never import the
test controls, and nothing imports the CLI), and a provider module imports only the provider API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_provider_importing_past_its_api_breaks_a_contract(tmp_path):
    """The contracts bite: a copy of the package whose provider imports the core directly fails."""
    import shutil

    copy = tmp_path / "mockserver"
    shutil.copytree(ROOT / "mockserver", copy, ignore=shutil.ignore_patterns("__pycache__"))
    provider = copy / "providers" / "modelverse.py"
    provider.write_text("from ..core.errors import ApiError  # noqa: F401\n" + provider.read_text())
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "A provider module imports only the provider API BROKEN" in result.stdout
