"""The architecture's rules (pyproject.toml's import-linter contracts) hold, and a break of them is caught."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e .[dev])")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_are_kept():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("pipeline/render/mesh.py", "import PySide6.QtCore", "Only ui/ imports Qt"),
    ("pipeline/runner.py", "import avatar_app.measure.profiler", "The pipeline never imports"),
    ("model/config.py", "import avatar_app.training.config", "model/ imports neither"),
    ("face/landmarks.py", "import avatar_app.face.mesh_layout", "No import cycles"),
])
def test_a_broken_rule_fails_the_check(tmp_path, module, line, broken):
    shutil.copytree(REPO / "avatar_app", tmp_path / "avatar_app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "avatar_app" / module
    path.write_text(path.read_text() + f"\n{line}  # the break under test\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout.split("Broken contracts")[-1], result.stdout[-3000:]
