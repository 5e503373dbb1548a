"""The layout shows the architecture: no core module imports a CLI module, data/ and models/
import nothing above them, no two modules import each other, and nothing in the package reads a
test switch or sets process-wide state when imported."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "threat_ensemble"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported_modules(path: Path, module_level: bool, names: bool = False) -> set[str]:
    """The modules ``path`` imports by absolute imports: all of them, or (``module_level``) only
    those it imports when it is itself imported, not inside a function or under
    ``if TYPE_CHECKING:``. ``from a import b`` names ``a.b`` when that is a module of the package,
    else ``a`` (and also ``a.b`` with ``names``: it may be a module of another package)."""
    found: set[str] = set()

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            later = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            later = later or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if not (module_level and later):
                if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    for alias in child.names:
                        full = f"{child.module}.{alias.name}"
                        found.add(full if full in MODULES else child.module)
                        found.update([full] if names else [])
                elif isinstance(child, ast.Import):
                    found.update(alias.name for alias in child.names)
            visit(child, later)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


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
    "data": ("threat_ensemble.models", "threat_ensemble.evaluation"),
}


def test_models_and_data_import_nothing_above_them() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith(FORBIDDEN[folder]))
        for folder in FORBIDDEN
        for path in (PACKAGE / folder).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


SCORING_NAMES = ("score", "scorer", "verdict", "member")  # what only a model (and its evaluation) does


def test_data_serves_data_and_scores_nothing() -> None:
    """data/ defines nothing that scores and calls no model's scoring method: the DataModules serve
    labelled raw rows and ``evaluation.scoring.score_rows`` scores them (issue 33: they had held a
    Scorer protocol, validation_scores, test_scores, fused_test_scores)."""
    offenders = []
    for path in (PACKAGE / "data").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                name = node.attr
            elif isinstance(node, ast.Name):
                name = node.id
            if name is not None and any(word in name.lower() for word in SCORING_NAMES):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    assert offenders == []


def test_the_concern_folders_exist_and_test_only_generators_left_the_package() -> None:
    for folder in ("cli", "callbacks", "data", "models", "http", "evaluation", "tracking"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    assert not (PACKAGE / "synthetic.py").exists()
    sources = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    assert "THREAT_ENSEMBLE_CRASH_AT" not in sources and "crash_point" not in sources


def _import_graph(module_level: bool) -> dict[str, set[str]]:
    return {name: _imported_modules(path, module_level) & MODULES.keys() for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected part of ``graph`` that has one (depth-first search)."""
    cycles, state, path = [], {}, []  # state: 1 on the current path, 2 done

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycle_at_module_level() -> None:
    graph = _import_graph(module_level=True)
    assert graph["threat_ensemble.data.preprocessing"] >= {"threat_ensemble.data.tables"}  # the graph is built
    assert _cycles(graph) == []


def test_no_two_modules_import_each_other_even_inside_a_function() -> None:
    """An import deferred into a function to dodge a circle is still the circle (it was
    data/preprocessing.py <-> data/profile.py): one of the two defines what both need."""
    graph = _import_graph(module_level=False)
    pairs = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a != b and a in graph[b]})
    assert pairs == []


def _third_party_modules() -> list[str]:
    """The other packages' modules that the package imports at module level (``from a import b``:
    ``a`` and, where it is a module, ``a.b``), imported first so that the state their own import
    sets is not laid at the package's door."""
    found = set().union(*(_imported_modules(path, module_level=True, names=True) for path in MODULES.values()))
    return sorted(name for name in found if name.split(".")[0] not in ("threat_ensemble", "__future__"))


# Run in a fresh interpreter: the package's other packages first, then every module of the package
# one at a time (pkgutil.walk_packages), noting what each import changed of the process-wide state;
# then the MLflow model class of tracking/pyfunc.py, built on first use, and what that changed.
IMPORT_EVERY_MODULE = """
import importlib, json, logging, os, pkgutil, sys, warnings

def state():
    root = logging.getLogger()
    return {
        "environment": dict(os.environ),
        "root logger level and handlers": [root.level, [repr(h) for h in root.handlers]],
        "warnings filters": [repr(f) for f in warnings.filters],
    }

def changed(before, after):
    old, new = before["environment"], after["environment"]
    found = [f"environment variable {k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return found + [key for key in before if key != "environment" and before[key] != after[key]]

names, offline = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in names:
    try:
        importlib.import_module(name)
    except ImportError:  # ``from a import b`` where b is not a module
        pass
imported, changes = [], {}
before = state()
import threat_ensemble
imported.append("threat_ensemble")
changes["threat_ensemble"] = changed(before, state())
for info in pkgutil.walk_packages(threat_ensemble.__path__, "threat_ensemble."):
    before = state()
    importlib.import_module(info.name)
    imported.append(info.name)
    changes[info.name] = changed(before, state())
pyfunc = sys.modules["threat_ensemble.tracking.pyfunc"]
model_before = ["mlflow" in sys.modules, *(os.environ.get(k) for k in offline)]
from threat_ensemble.tracking.pyfunc import EnsembleModel
from mlflow.pyfunc import PythonModel
model_after = [issubclass(EnsembleModel, PythonModel), *(os.environ.get(k) for k in offline)]
print(json.dumps({
    "imported": imported,
    "changes": {k: v for k, v in changes.items() if v},
    "model": [model_before, model_after, EnsembleModel.__qualname__, pyfunc.EnsembleModel is EnsembleModel],
}))
"""


@pytest.fixture(scope="module")
def imported_everything() -> dict:
    """:data:`IMPORT_EVERY_MODULE`'s report (one interpreter for the two tests below: about 5 s)."""
    from threat_ensemble.tracking import OFFLINE_MLFLOW

    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_MLFLOW}  # the package's own setting visible
    arguments = [json.dumps(_third_party_modules()), json.dumps(list(OFFLINE_MLFLOW))]
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE, *arguments], capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_importing_any_module_changes_no_process_wide_state(imported_everything: dict) -> None:
    """No environment variable, no level or handler of the root logger, no warnings filter:
    those change only when the package runs (a training run, a model logged or loaded)."""
    assert sorted(imported_everything["imported"]) == sorted(MODULES)  # every module, none skipped
    assert imported_everything["changes"] == {}


def test_the_pyfunc_module_imports_mlflow_and_switches_it_offline_only_when_its_model_is_used(
    imported_everything: dict,
) -> None:
    """tracking/pyfunc.py set MLflow's variables when imported (spark/score.py imports it for its
    column names); now the model class, an MLflow ``PythonModel``, is built on first use: with every
    module of the package imported, MLflow is not yet, and no variable of it is set."""
    from threat_ensemble.tracking import OFFLINE_MLFLOW

    before, after, qualname, same = imported_everything["model"]
    names = list(OFFLINE_MLFLOW)
    assert before == [False, *(None for _ in names)]
    assert after == [True, *(OFFLINE_MLFLOW[k] for k in names)]
    assert qualname == "EnsembleModel" and same


def test_train_py_refuses_a_missing_table_before_it_imports_torch_or_lightning(tmp_path: Path) -> None:
    """A refused input is said in well under a second: train.py reads the table before it imports
    torch and Lightning (seconds of imports). A warnings display class imported from console.py, which
    imports Lightning, once made every refusal wait for them."""
    code = (
        "import sys; from threat_ensemble.cli.train import main; code = main(['--data', sys.argv[1]]); "
        "print(code, sorted(m for m in ('torch', 'lightning', 'sklearn', 'mlflow') if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.csv")], capture_output=True, text=True, check=False
    )
    assert run.stderr.strip() == f"error: {tmp_path / 'missing.csv'}: no such file"
    assert run.stdout.split(None, 1) == ["2", "[]\n"]
