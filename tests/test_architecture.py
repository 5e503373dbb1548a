"""The layout shows the architecture: no core module imports a CLI module, and nothing in the
package reads a test switch or sets process-wide state when imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "threat_ensemble"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_module_outside_cli_imports_a_cli_module() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith("threat_ensemble.cli"))
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


FORBIDDEN = {  # the dependency direction: a model knows nothing of how it is trained or logged
    "models": ("threat_ensemble.callbacks", "threat_ensemble.pipeline", "threat_ensemble.tracking"),
    "data": ("threat_ensemble.models",),
}


def test_models_and_data_import_nothing_above_them() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith(FORBIDDEN[folder]))
        for folder in FORBIDDEN
        for path in (PACKAGE / folder).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_concern_folders_exist_and_test_only_generators_left_the_package() -> None:
    for folder in ("cli", "callbacks", "data", "models", "http", "evaluation", "tracking"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    assert not (PACKAGE / "synthetic.py").exists()
    sources = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    assert "THREAT_ENSEMBLE_CRASH_AT" not in sources and "crash_point" not in sources


def test_importing_the_package_changes_no_environment_variable() -> None:
    code = (
        "import os; before = dict(os.environ); import threat_ensemble, threat_ensemble.config; "
        "print(sorted(set(os.environ.items()) ^ set(before.items())))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
