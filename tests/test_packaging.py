"""The project installs like a real package: every package is listed, and a built wheel carries the shipped
paintings and models (found with importlib.resources, never through the source checkout)."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _packages_on_disk() -> set[str]:
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "avatar_app").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    return found | {"avatar_app.assets"}


def test_every_package_is_listed_for_the_wheel():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _packages_on_disk()
    assert config["package-dir"]["avatar_app.assets"] == "assets"


def test_the_shipped_data_is_found_through_the_package():
    from avatar_app.pipeline.render.neural import default_model, shipped_models_dir
    from avatar_app.ui.library import SHIPPED_PORTRAITS

    assert (SHIPPED_PORTRAITS / "mona_lisa.jpg").is_file()
    assert Path(default_model()).parent == shipped_models_dir()
    assert (Path(default_model()) / "model.json").is_file()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the files a clean checkout has")
def test_a_built_wheel_carries_the_code_the_paintings_and_the_model(tmp_path):
    # Built from the files git tracks, copied aside: a stale build/ folder in the checkout cannot leak into it.
    tracked = subprocess.run(["git", "ls-files", "avatar_app", "assets", "pyproject.toml", "README.md"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in tracked:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                            "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(out.glob("avatar_app-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("avatar_app/commands/cli.py", "avatar_app/pipeline/stages.py", "avatar_app/ui/main_window.py",
                   "avatar_app/assets/portraits/mona_lisa.jpg",
                   "avatar_app/assets/portraits/girl_with_a_pearl_earring.jpg",
                   "avatar_app/assets/models/realtime-warp-1/model.json",
                   "avatar_app/assets/models/realtime-warp-1/MODEL_CARD.md",
                   "avatar_app/assets/models/realtime-warp-1/checkpoint.pt"):
        assert needed in names, needed
    assert any(n.startswith("avatar_app/assets/models/realtime-warp-1/") and n.endswith(".onnx") for n in names)
    modules = {n for n in names if n.startswith("avatar_app/") and n.endswith(".py")}
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "avatar_app").rglob("*.py") if "__pycache__" not in p.parts}
    assert on_disk <= modules  # no module left behind
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "avatar-app = avatar_app.commands.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_readme_commands_run_as_written_after_its_set_up():
    """The set-up puts avatar-app (and torchrun) in .venv/bin only: a code block that calls one bare must activate
    that environment first, else a newcomer copying it gets 'command not found'."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```(?:bash|sh)?\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4
    bare = re.compile(r"(?:^|&&|\|\||;|\|)\s*(avatar-app|torchrun)\b")
    for block in blocks:
        activated = False
        for line in block.splitlines():
            command = line.split(" #")[0].strip()
            if re.match(r"(source|\.) \.venv/bin/activate\b", command):
                activated = True
            found = bare.search(command)
            assert activated or not found, f"README runs a bare {found and found[1]} without the venv: {line}"
