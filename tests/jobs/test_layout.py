"""The package layout: module paths are import names under the source root jobs/, no module shadows a library, and
imports only reach down (entry points → stages → the shared modules below them)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "jobs" / "lakehouse"
# The architecture as the README's Layout section draws it.
ENTRY_POINTS = {"cli", "run", "airflow_tasks", "airflow_local", "submit", "notebook"}
STAGES = {"generate", "ingest", "quality", "aggregate", "publish", "maintain", "forget"}
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def imported(module: str) -> set[str]:
    """The lakehouse modules `module` imports (at its top or inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lakehouse":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lakehouse."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("lakehouse.")}
    return found - {module}


def test_every_module_is_placed_in_the_layers() -> None:
    assert ENTRY_POINTS | STAGES <= set(MODULES)


@pytest.mark.parametrize("module", sorted(STAGES))
def test_a_stage_imports_no_other_stage_nor_an_entry_point(module: str) -> None:
    assert imported(module) & (STAGES | ENTRY_POINTS) == set()


@pytest.mark.parametrize("module", sorted(set(MODULES) - STAGES - ENTRY_POINTS))
def test_a_shared_module_imports_no_stage_nor_an_entry_point(module: str) -> None:
    assert imported(module) & (STAGES | ENTRY_POINTS) == set()


def test_no_module_is_named_like_a_library() -> None:
    """spark-submit puts the folder of the script it runs (submit.py) first on sys.path: a module there named like
    a library (as trino.py once was) would shadow it. (The checkout's own files on the path, such as the scripts of
    benchmarks/ or a `state/` folder, are not libraries.)"""
    found = {name: importlib.util.find_spec(name) for name in MODULES}
    origins = {name: spec.origin for name, spec in found.items() if spec is not None and spec.origin is not None}
    assert {name: origin for name, origin in origins.items() if not Path(origin).is_relative_to(REPO)} == {}


def test_the_source_root_alone_resolves_the_package(tmp_path: Path) -> None:
    """Without the installed package (its editable finder taken away), `jobs/` on the path is enough, and the
    module's file is its import name."""
    program = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
        "sys.path[:] = [p for p in sys.path if 'editable' not in p]; "
        f"sys.path.insert(0, {str(PACKAGE.parent)!r}); import lakehouse.ingest; print(lakehouse.ingest.__file__)"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout.strip() == str(PACKAGE / "ingest.py")
