"""Safety, loading: no code path runs code hidden in a user's file.

A. Loading. A scan of the source (avatar_app/ and benchmarks/) refuses every loader that can run code from a
   file (pickle and its kin, numpy without allow_pickle=False, torch.load without weights_only=True, yaml.load
   without a safe loader, marshal, eval/exec); a self-test shows the scan catches each pattern, through import
   aliases, and passes the safe forms. Behaviour: a checkpoint that would run code when unpickled is refused and
   the code never runs. (A pickled array inside an `.avatar` is covered by
   tests/test_avatar.py::test_pickled_arrays_are_refused_not_executed; here only the optional neural arrays,
   which that test does not reach.)
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from avatar_app.errors import InputFileError

REPO = Path(__file__).resolve().parents[1]
SCANNED = (REPO / "avatar_app", REPO / "benchmarks")


# == A. No unsafe loading =========================================================================================

_PICKLE_MODULES = ("pickle", "_pickle", "cPickle", "dill", "cloudpickle")
# Calls that run code from their input whatever the arguments.
FORBIDDEN = {
    *(f"{m}.{f}" for m in _PICKLE_MODULES for f in ("load", "loads", "Unpickler", "_Unpickler")),
    "joblib.load", "shelve.open", "shelve.Shelf", "shelve.DbfilenameShelf", "shelve.BsdDbShelf",
    "marshal.load", "marshal.loads", "pandas.read_pickle", "torch.package.PackageImporter",
    "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
    "builtins.eval", "builtins.exec",
    # TorchScript archives carry code that torch.jit.load compiles and runs (a module's __setstate__ runs while
    # the file loads, and it may call torch.from_file(..., shared=True): read or overwrite any file of the user's).
    "torch.jit.load",
}
# Calls that are safe only with the right arguments.
CHECKED = {"numpy.load", "torch.load", "torch.serialization.load", "yaml.load", "yaml.load_all"}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}

# Known uses of a forbidden loader, each with why it is tolerated. A new use anywhere else fails the scan.
TOLERATED = {
    # --runtime torchscript loads the model folder's .ts files: only safe for model folders the user trusts
    # (export/README.md); the default ONNX runtime runs no code from the file.
    ("avatar_app/pipeline/render/exported.py", "torch.jit.load"),
    # The exporter re-reads the .ts files it has just written into its own temp folder, to verify them.
    ("avatar_app/model/export.py", "torch.jit.load"),
}


def _resolved(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`np.load` -> 'numpy.load' given `import numpy as np`; None for anything not rooted in an import."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolved(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_const(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _argument(call: ast.Call, keyword: str, position: int | None) -> ast.AST | None:
    for k in call.keywords:
        if k.arg == keyword:
            return k.value
    if position is not None and len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args):
        return call.args[position]
    return None


def _why_unsafe(name: str, call: ast.Call, aliases: dict[str, str]) -> str | None:
    if name in FORBIDDEN:
        return "runs code from its input"
    if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        return "arguments passed through * or **: cannot check they are safe"
    if name == "numpy.load":
        if not _is_const(_argument(call, "allow_pickle", 2), False):
            return "without allow_pickle=False"
    elif name in ("torch.load", "torch.serialization.load"):
        if not _is_const(_argument(call, "weights_only", None), True):
            return "without weights_only=True"
    elif name in ("yaml.load", "yaml.load_all"):
        loader = _argument(call, "Loader", 1)
        if loader is None or _resolved(loader, aliases) not in SAFE_YAML_LOADERS:
            return "without Loader=yaml.SafeLoader"
    return None


def unsafe_loads(source: str, filename: str = "<snippet>") -> tuple[list[str], list[str]]:
    """(findings, checked): each finding 'file:line: name: why'; `checked` names every loader call judged safe."""
    tree = ast.parse(source, filename)
    # Imports anywhere in the file (module or function level) name what their aliases stand for.
    aliases = {"eval": "builtins.eval", "exec": "builtins.exec"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    findings, checked, called = [], [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _resolved(node.func, aliases)
            if name in FORBIDDEN or name in CHECKED:
                called.add(id(node.func))
                why = _why_unsafe(name, node, aliases)
                if why:
                    findings.append(f"{filename}:{node.lineno}: {name}: {why}")
                else:
                    checked.append(name)
    for node in ast.walk(tree):
        # A loader referenced without being called here (passed on, assigned, subclassed) cannot be checked.
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load) and id(node) not in called:
            name = _resolved(node, aliases)
            if name in FORBIDDEN or name in CHECKED:
                findings.append(f"{filename}:{node.lineno}: {name}: referenced, not called: cannot check its use")
    return findings, checked


UNSAFE_SNIPPETS = [
    "import numpy as np\nnp.load('a.npy')",
    "import numpy as np\nnp.load('a.npz', allow_pickle=True)",
    "import numpy\nnumpy.load(f, None, True)",
    "from numpy import load\nload(f)",
    "from numpy import load as read\nread(f, allow_pickle=flag)",
    "import numpy as np\nnp.load(f, allow_pickle=False, **options)",
    "import numpy as np\nread = np.load",
    "import torch\ntorch.load(f)",
    "import torch\ntorch.load(f, map_location='cpu', weights_only=False)",
    "from torch import load\nload(f, map_location='cpu')",
    "import torch as T\nT.load(f, weights_only=trusted)",
    "import torch.serialization\ntorch.serialization.load(f)",
    "def f(p):\n    import torch\n    return torch.load(p)",
    "import torch\ntorch.jit.load(p)",
    "from torch import jit\njit.load(p)",
    "import pickle\npickle.load(f)",
    "import pickle\npickle.loads(data)",
    "import pickle as pk\npk.Unpickler(f).load()",
    "from pickle import loads\nloads(data)",
    "import pickle\nclass Reader(pickle.Unpickler):\n    pass",
    "import _pickle\n_pickle.loads(data)",
    "import cPickle\ncPickle.load(f)",
    "import dill\ndill.load(f)",
    "import joblib\njoblib.load(p)",
    "import shelve\nshelve.open(p)",
    "import pandas as pd\npd.read_pickle(p)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "from yaml import load, FullLoader\nload(text, FullLoader)",
    "import yaml\nyaml.unsafe_load(text)",
    "import yaml\nyaml.full_load(text)",
    "import marshal\nmarshal.loads(data)",
    "from marshal import load\nload(f)",
    "eval(text)",
    "exec(code)",
    "import builtins\nbuiltins.eval(text)",
]
SAFE_SNIPPETS = [
    "import numpy as np\nnp.load(f, allow_pickle=False)",
    "import numpy as np\nnp.load(f, allow_pickle=False, mmap_mode='r')",
    "import numpy\nnumpy.load(f, None, False)",
    "from numpy import load\nload(f, allow_pickle=False)",
    "import numpy as np\nnp.save(f, a, allow_pickle=False)\nnp.loadtxt(f)",
    "import torch\ntorch.load(p, map_location='cpu', weights_only=True)",
    "from torch import load as read\nread(p, weights_only=True)",
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "from yaml import load, CSafeLoader\nload(text, Loader=CSafeLoader)",
    "import pickle\npickle.dumps(x)",
    "import json\njson.loads(text)",
    "model.eval()\napp.exec()\nself.load(x)\nstore.load(path)",
]


@pytest.mark.parametrize("source", UNSAFE_SNIPPETS)
def test_the_scan_catches_each_unsafe_loader(source):
    findings, _ = unsafe_loads(source)
    assert findings, f"not caught:\n{source}"


@pytest.mark.parametrize("source", SAFE_SNIPPETS)
def test_the_scan_passes_the_safe_forms(source):
    assert unsafe_loads(source)[0] == []


def test_no_code_path_loads_user_files_with_pickle_or_other_code_running_loaders():
    files = sorted(p for root in SCANNED for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 20
    findings, checked = [], []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        found, ok = unsafe_loads(path.read_text(encoding="utf-8"), rel)
        findings += [f for f in found if (rel, f.split(": ")[1]) not in TOLERATED]
        checked += ok
    assert findings == []
    # Not vacuous: the scan did recognise the package's own (safe) numpy and torch loads.
    assert {"numpy.load", "torch.load"} <= set(checked)


class _WritesMarker:
    """Unpickling this object creates a file: proof that a loader ran code from the file it was given."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path):
    torch = pytest.importorskip("torch", reason="checkpoints need torch (pip install -e .[train])")
    from avatar_app.model.checkpoint import load_checkpoint

    marker = tmp_path / "code-ran"
    payload = _WritesMarker()
    payload.marker = str(marker)
    files = {"pickle.pt": lambda p: p.write_bytes(pickle.dumps(payload, protocol=2)),  # a bare pickle
             "object.pt": lambda p: torch.save(payload, p),  # torch's zip format, the object at the top
             "inside.pt": lambda p: torch.save({"format": "avatar_app.checkpoint", "version": 1, "step": payload}, p)}
    for name, write in files.items():
        write(tmp_path / name)
        with pytest.raises(InputFileError, match=re.escape(name)) as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
        assert not marker.exists(), f"loading {name} ran its code"
    # The payloads are live: a pickle-enabled load of each one does create the marker.
    for name in files:
        if name == "pickle.pt":
            pickle.loads((tmp_path / name).read_bytes())
        else:
            torch.load(tmp_path / name, weights_only=False)
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:'torch.load' received a zip file:UserWarning")
def test_a_torchscript_file_given_as_a_checkpoint_is_refused_before_its_code_runs(tmp_path):
    torch = pytest.importorskip("torch", reason="checkpoints need torch (pip install -e .[train])")
    from avatar_app.model.checkpoint import load_checkpoint

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"hello\n")

    class Overwrites(torch.nn.Module):
        def __init__(self, victim: str):
            super().__init__()
            self.victim = victim
            self.seen = torch.zeros(())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

        @torch.jit.export
        def __getstate__(self) -> tuple[bool, str]:
            return self.training, self.victim

        @torch.jit.export
        def __setstate__(self, state: tuple[bool, str]) -> None:  # runs inside torch.jit.load
            t = torch.from_file(state[1], True, 6, dtype=torch.uint8)
            t.copy_(torch.tensor([112, 119, 110, 101, 100, 10], dtype=torch.uint8))  # b"pwned\n"
            self.seen = t.sum()  # used, so TorchScript keeps the write (a hand-written file need not bother)
            self.training, self.victim = state

    torch.jit.script(Overwrites(str(victim))).save(str(tmp_path / "model.pt"))
    with pytest.raises(InputFileError, match="model.pt"):
        load_checkpoint(tmp_path / "model.pt")
    assert victim.read_bytes() == b"hello\n"
    # The file is live: torch.jit.load (what --runtime torchscript uses) runs it and overwrites the victim.
    torch.jit.load(str(tmp_path / "model.pt"))
    assert victim.read_bytes() == b"pwned\n"


def test_a_pickled_neural_array_in_an_avatar_is_refused_not_executed(tmp_path, mona_avatar):
    # test_avatar.py pickles every array, so the load fails at the first; here the required arrays are good
    # and only the optional neural ones (read by a second path) carry the payload.
    from avatar_app.pipeline.avatar import load_avatar, save_avatar

    good = save_avatar(mona_avatar, tmp_path / "good.avatar")
    marker = tmp_path / "code-ran"
    payload = _WritesMarker()
    payload.marker = str(marker)
    evil_array = np.empty(1, dtype=object)
    evil_array[0] = payload
    with zipfile.ZipFile(good) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    with np.load(io.BytesIO(members["arrays.npz"]), allow_pickle=False) as npz:
        arrays = dict(npz)
    buf = io.BytesIO()
    np.savez(buf, **arrays, neural_embedding=evil_array, neural_psi=evil_array)
    manifest = json.loads(members["avatar.json"])
    manifest["model"] = {"id": "0123456789abcdef"}
    evil = tmp_path / "evil.avatar"
    with zipfile.ZipFile(evil, "w") as zout:
        zout.writestr("avatar.json", json.dumps(manifest))
        zout.writestr("portrait.png", members["portrait.png"])
        zout.writestr("arrays.npz", buf.getvalue())
    with pytest.raises(InputFileError, match="evil.avatar.*arrays.npz"):
        load_avatar(evil)
    assert not marker.exists()


