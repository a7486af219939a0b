"""The house holds (README "Layout"): import-linter's contracts in pyproject.toml pass on the package, and they do
catch what they are there for, an import that runs back up a floor and two rooms importing each other in a circle,
imports inside functions included (grimp reads them all)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package under root/scripts with root/pyproject.toml's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root / "scripts")}
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    proc.out = proc.stdout + proc.stderr
    return proc


def test_the_package_keeps_the_house():
    proc = lint_imports(REPO)
    assert proc.returncode == 0 and "kept, 0 broken" in proc.out, proc.out[-6000:]


@pytest.mark.parametrize(
    "room, line, says",
    [
        # ground importing config: one floor up (inside a function, where a circle would once have hidden)
        (
            "paths.py",
            "def _up():\n    from . import config\n",
            "engine_factory.paths is not allowed to import engine_factory.config",
        ),
        # two records importing each other: provenance already imports fingerprint
        ("fingerprint.py", "from . import provenance\n", "No cycles are allowed in engine_factory"),
    ],
)
def test_the_contracts_catch_an_upward_import_and_a_circle(tmp_path, room, line, says):
    shutil.copytree(
        REPO / "scripts" / "engine_factory",
        tmp_path / "scripts" / "engine_factory",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / "scripts" / "engine_factory" / room, "a") as f:
        f.write("\n\n" + line)
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0 and says in proc.out, proc.out[-6000:]
