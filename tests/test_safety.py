"""Safety: no code path runs code hidden in a user's file, and a write killed midway never leaves a torn file.

A. Loading. A scan of the source (avatar_app/ and benchmarks/) refuses every loader that can run code from a
   file (pickle and its kin, numpy without allow_pickle=False, torch.load without weights_only=True, yaml.load
   without a safe loader, marshal, eval/exec); a self-test shows the scan catches each pattern, through import
   aliases, and passes the safe forms. Behaviour: a checkpoint that would run code when unpickled is refused and
   the code never runs. (A pickled array inside an `.avatar` is covered by
   tests/test_avatar.py::test_pickled_arrays_are_refused_not_executed; here only the optional neural arrays,
   which that test does not reach.)

B. Writing. For each kind of file the app writes for the user, a subprocess writes it again and again
   (alternating two good versions) and is killed with SIGKILL: at random moments, while it holds the half-written
   file open (seen through /proc), and from inside the write itself (a patched writer kills its own process
   after part of the data is on disk). Afterwards the final name must hold one complete good version, read back
   with the app's own loader, and nothing else may appear under a visible name.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import json
import os
import pickle
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
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
    ("avatar_app/pipeline/render/neural.py", "torch.jit.load"),
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


# == B. Writes are atomic, shown by killing a write midway ========================================================

POSIX = pytest.mark.skipif(sys.platform == "win32" or not hasattr(signal, "SIGKILL"),
                           reason="SIGKILL is POSIX-only; Windows has no way to kill a process mid-write like this")
PROC = Path("/proc/self/fd").is_dir()
# Linux: one server imports everything once and forks a writer per trial (a fresh interpreter per trial would
# spend ~4 s importing torch each time). Elsewhere forking after importing Qt and torch is not safe: one process
# per trial.
FORK = sys.platform.startswith("linux")

TINY = dict(name="tiny", image_size=64, embed_dim=64, base_channels=8, max_channels=32, encoder_blocks=4,
            encoder_attention=16, gen_channels=[8, 16, 32], gen_stem_stride=2, gen_middle_blocks=1,
            gen_attention_down=[], gen_attention_up=[], landmark_thickness=1)


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str  # the final file (or folder) name
    leftovers: str  # regex of the names a killed write may leave beside the final one (its temp files)
    random: int  # kills at random moments
    while_open: int  # kills while the writer holds a file open in the folder (/proc)
    inside: tuple[str, ...]  # kill points inside the write (see _arm)
    needs: tuple[str, ...] = ()


KINDS = {
    "avatar": Kind("me.avatar", r"\.me\.[0-9a-f]{8}\.partial\.avatar", 4, 2, ("in-zip-member", "before-replace")),
    "image": Kind("snapshot.png", r"\.snapshot\.[0-9a-f]{8}\.partial\.png", 4, 2, ("in-write-bytes", "before-replace")),
    # Qt's QSaveFile writes an unnamed O_TMPFILE on Linux (a named settings.ini.XXXXXX elsewhere) and holds a
    # QLockFile, which Qt takes over once its process is dead. No Python writer to patch: no kill from inside.
    "settings": Kind("settings.ini", r"settings\.ini\.(lock|[A-Za-z0-9]{6})", 4, 2, (), ("PySide6",)),
    "checkpoint": Kind("checkpoint.pt", r"\.checkpoint\.[0-9a-f]{8}\.partial\.pt", 2, 1,
                       ("in-torch-save", "before-replace"), ("torch",)),
    "export": Kind("model", r"\.model\.(partial|old)", 2, 1, ("in-script-save", "after-swap"), ("torch",)),
}
# What the final name holds after each kill from inside: the first version, except once the swap is done.
INSIDE_LEAVES = {"after-swap": 1}


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _make_writer(kind: str, prep: Path):
    """write(version, path) for two distinguishable good versions of one kind of file (in the writer process)."""
    if kind == "avatar":
        from avatar_app.pipeline.avatar import load_avatar, save_avatar

        base = load_avatar(prep / "mona.avatar")
        versions = [dataclasses.replace(base, name="version-a"),
                    dataclasses.replace(base, name="version-b", landmarks=base.landmarks + 1,
                                        image=np.ascontiguousarray(base.image[:, ::-1]))]
        return lambda v, path: save_avatar(versions[v], path)
    if kind == "image":
        from avatar_app.images import save_image_atomic

        versions = [np.random.default_rng(v).integers(0, 256, (1024, 1024, 3), dtype=np.uint8) for v in (0, 1)]
        return lambda v, path: save_image_atomic(path, versions[v])
    if kind == "settings":
        from PySide6.QtCore import QSettings

        from avatar_app.ui.settings import AppSettings

        # Every field differs from its default, so a file cut short reads back as neither version. The long path
        # makes each write take milliseconds, so random kills land inside it.
        versions = [AppSettings(avatar="/p/" + "a" * 1_000_000 + ".avatar", source="1", mirror=False, size=384,
                                camera_size="640x480", fps=24, renderer="neural:/m/a", overlay=True, hud=True),
                    AppSettings(avatar="/p/" + "b" * 1_000_000 + ".avatar", source="clip.mp4", mirror=False, size=768,
                                camera_size="1920x1080", fps=60, renderer="neural:/m/b", overlay=True, hud=True)]
        stores = {}

        def write(v, path):
            if path not in stores:
                stores[path] = QSettings(str(path), QSettings.Format.IniFormat)
            versions[v].save(stores[path])

        return write
    import torch

    from avatar_app.model.checkpoint import build_networks, save_checkpoint
    from avatar_app.model.config import ModelConfig

    torch.set_num_threads(1)  # before any fork: a forked child must not inherit a half-used thread pool
    config = ModelConfig.from_dict(TINY)
    if kind == "checkpoint":
        nets = [build_networks(config, seed=v) for v in (0, 1)]
        return lambda v, path: save_checkpoint(path, nets[v], step=v + 1)
    if kind == "export":
        from avatar_app.model.export import export_checkpoint

        checkpoints = [prep / f"export-{v}.pt" for v in (0, 1)]
        for v, c in enumerate(checkpoints):
            save_checkpoint(c, build_networks(config, seed=v))
        # Once here, so each forked writer does not pay torch's first-export set-up (seconds).
        export_checkpoint(checkpoints[0], prep / "warm-up", ["torchscript"])
        return lambda v, path: export_checkpoint(checkpoints[v], path, ["torchscript"])
    raise ValueError(kind)


def _arm(point: str, final: Path) -> None:
    """Patch the writer so that it kills its own process at ``point``, part of the way through the next write."""
    import pathlib

    def torn(write, path_arg: int):  # the real write, then cut to half its length on disk, then death
        def wrapper(*a, **k):
            write(*a, **k)
            os.truncate(a[path_arg], os.path.getsize(a[path_arg]) // 2)
            _die()
        return wrapper

    if point == "before-replace":  # every byte in the temp file, the rename not yet done
        os.replace = lambda *a, **k: _die()
    elif point == "in-zip-member":  # the avatar archive with its first member only, no central directory
        writestr = zipfile.ZipFile.writestr
        calls = []

        def dying_writestr(self, *a, **k):
            if calls:
                self.fp.flush()
                _die()
            calls.append(1)
            return writestr(self, *a, **k)

        zipfile.ZipFile.writestr = dying_writestr
    elif point == "in-write-bytes":
        pathlib.Path.write_bytes = torn(pathlib.Path.write_bytes, 0)
    elif point == "in-torch-save":
        import torch

        torch.save = torn(torch.save, 1)
    elif point == "in-script-save":  # the exporter's generator.ts half-written in its temp folder
        import torch

        torch.jit.ScriptModule.save = torn(torch.jit.ScriptModule.save, 1)
    elif point == "after-swap":  # the first rename that touches the final folder done, nothing after it
        import avatar_app.atomic
        import avatar_app.model.export

        def then_die(op):
            def wrapper(a, b, *rest, **k):
                result = op(a, b, *rest, **k)
                if final in (Path(a), Path(b)):
                    _die()
                return result
            return wrapper

        os.rename, os.replace = then_die(os.rename), then_die(os.replace)
        for module in (avatar_app.atomic, avatar_app.model.export):
            if hasattr(module, "exchange_paths"):
                module.exchange_paths = then_die(module.exchange_paths)
    else:
        raise ValueError(point)


def _say(**message) -> None:
    print(json.dumps(message), flush=True)


def _run_writer(write, job: dict) -> None:
    """The writer process: one good version, then either a write that kills itself or an endless alternation."""
    path, mode = Path(job["path"]), job["mode"]
    start = time.perf_counter()
    write(int(mode[6:]) if mode.startswith("write:") else 0, path)
    _say(event="started", pid=os.getpid(), seconds=time.perf_counter() - start)
    if mode.startswith("write:"):
        return
    if mode != "loop":
        _arm(mode, path)
        write(1, path)
        _say(event="survived", mode=mode)  # the kill point was never reached: the test fails
        return
    v = 1
    while True:
        write(v, path)
        v ^= 1


def _serve(prep: str, fork: bool = True) -> None:
    """The writer server: reads one job per line on stdin; with ``fork`` each job runs in a forked child."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    writers = {}
    _say(event="ready")
    for line in sys.stdin:
        job = json.loads(line)
        if job["kind"] not in writers:
            writers[job["kind"]] = _make_writer(job["kind"], Path(prep))
        if not fork:
            _run_writer(writers[job["kind"]], job)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_writer(writers[job["kind"]], job)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 3
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        _say(event="exited", pid=pid, signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
             code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)


class Writers:
    """The test's side of _serve: start a job, kill its writer, learn how it ended."""

    def __init__(self, prep: Path):
        self.prep, self.log = prep, prep / "writers.log"
        self.proc = None
        if FORK:
            self.proc = self._spawn(fork=True)
            self._expect("ready", timeout=120)

    def _spawn(self, fork: bool) -> subprocess.Popen:
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=path)
        code = f"from tests.test_safety import _serve; _serve({str(self.prep)!r}, fork={fork})"
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True, bufsize=1,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "a"))
        proc.lines = queue.Queue()
        threading.Thread(target=lambda: [proc.lines.put(ln) for ln in proc.stdout], daemon=True).start()
        return proc

    def _expect(self, event: str, timeout: float, proc=None) -> dict:
        proc = proc or self.proc
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = proc.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no '{event}' from the writer within {timeout:.0f} s; its log ends:\n{self.tail()}")
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # something a library printed
            if message.get("event") == "survived":
                pytest.fail(f"the writer survived kill point '{message['mode']}': the patch never fired")
            if message.get("event") == event:
                return message

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def start(self, kind: str, path: Path, mode: str) -> dict:
        proc = self.proc if FORK else self._spawn(fork=False)
        proc.stdin.write(json.dumps({"kind": kind, "path": str(path), "mode": mode}) + "\n")
        proc.stdin.flush()
        started = self._expect("started", timeout=180, proc=proc)
        started["proc"] = proc
        return started

    def ended(self, started: dict) -> tuple[int | None, int | None]:
        """(signal, exit code) of the writer."""
        if FORK:
            m = self._expect("exited", timeout=120)
            return m["signal"], m["code"]
        code = started["proc"].wait(timeout=120)
        return (-code, None) if code < 0 else (None, code)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def writers(tmp_path_factory, mona_avatar):
    from avatar_app.pipeline.avatar import save_avatar

    prep = tmp_path_factory.mktemp("writers")
    save_avatar(mona_avatar, prep / "mona.avatar")
    w = Writers(prep)
    yield w
    w.close()


def _digest(a) -> str:
    data = np.ascontiguousarray(a).tobytes() if isinstance(a, np.ndarray) else a.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _read_back(kind: str, path: Path):
    """What the user gets back through the app's own loader: a fingerprint to compare with the good versions."""
    if kind == "avatar":
        from avatar_app.pipeline.avatar import load_avatar

        a = load_avatar(path)
        return a.name, _digest(a.image), _digest(a.landmarks), _digest(a.mesh.points), _digest(a.mesh.triangles)
    if kind == "image":
        from avatar_app.images import load_image

        return _digest(load_image(path))
    if kind == "settings":
        from PySide6.QtCore import QSettings

        from avatar_app.ui.settings import AppSettings

        values = dataclasses.astuple(AppSettings.load(QSettings(str(path), QSettings.Format.IniFormat)))
        return tuple(_digest(v) if isinstance(v, str) else v for v in values)
    if kind == "checkpoint":
        from avatar_app.model.checkpoint import load_checkpoint, model_id

        nets, raw = load_checkpoint(path)
        return model_id(nets), raw["step"]
    if kind == "export":
        from avatar_app.pipeline.render.neural import ExportedModel

        m = ExportedModel(path, runtime="torchscript", trust_code=True)
        s, n_psi = m.size, m.manifest["generator"]["inputs"][1]["shape"][1]
        rng = np.random.default_rng(0)
        image = m.generate(rng.random((1, 3, s, s), np.float32), rng.standard_normal((1, n_psi), np.float32))
        e, psi = m.identity(rng.random((2, 3, s, s), np.float32) * 2 - 1, rng.random((2, 3, s, s), np.float32))
        # Every file must come from the export its manifest describes: the outputs pin the weights to the id.
        return m.model_id, sorted(p.name for p in path.iterdir()), _digest(image), _digest(e), _digest(psi)
    raise ValueError(kind)


def _writing(pid: int, fd: str) -> bool:
    """Whether the process opened this descriptor write-only (how a file is rewritten in place)."""
    try:
        flags = next(ln for ln in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines() if ln.startswith("flags:"))
    except (OSError, StopIteration):
        return False
    return int(flags.split()[1], 8) & os.O_ACCMODE == os.O_WRONLY


def _kill_while_open(pid: int, folder: Path, final: Path, in_place_for: float = 0.0, timeout: float = 30.0) -> str:
    """SIGKILL the writer the moment it holds a file in ``folder`` open: the final file opened to be rewritten in
    place, or (after ``in_place_for`` seconds of looking for that alone) any temp file, a named one or Qt's
    unnamed O_TMPFILE. Returns what it held."""
    fd_dir = Path(f"/proc/{pid}/fd")
    prefix = str(folder) + os.sep
    start = time.monotonic()
    while time.monotonic() < start + timeout:
        temps_too = time.monotonic() > start + in_place_for
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            break
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if not target.startswith(prefix) or target.endswith(".lock"):
                continue
            if (target == str(final) and _writing(pid, fd)) or (temps_too and target != str(final)):
                os.kill(pid, signal.SIGKILL)
                return target
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"never saw the writer (pid {pid}) with a file open in {folder} within {timeout:.0f} s")


def _assert_intact(kind: str, folder: Path, refs: list, trial: str) -> int:
    """The final name holds one good version, and no visible name shows anything else; returns the version."""
    spec = KINDS[kind]
    final = folder / spec.name
    others = [n for n in os.listdir(folder) if n != spec.name]
    assert final.exists() and all(re.fullmatch(spec.leftovers, n) for n in others), (trial, others)
    got = _read_back(kind, final)
    assert got in refs, f"{trial}: {final} holds neither good version"
    return refs.index(got)


@POSIX
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_write_killed_midway_leaves_a_complete_good_version(kind, writers, tmp_path):
    spec = KINDS[kind]
    for module in spec.needs:
        pytest.importorskip(module, reason=f"writing {kind} files needs {module}")
    refs = []
    for v in (0, 1):
        (tmp_path / f"ref{v}").mkdir()
        started = writers.start(kind, tmp_path / f"ref{v}" / spec.name, f"write:{v}")
        assert writers.ended(started) == (None, 0), writers.tail()
        refs.append(_read_back(kind, tmp_path / f"ref{v}" / spec.name))
    assert refs[0] != refs[1], "the two versions must be told apart"

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    trials = [("inside", p) for p in spec.inside]
    # A kill while open first looks for a second for the final file being rewritten in place (which no atomic
    # writer does), then kills at the first temp file.
    trials += [("while-open", 1.0)] * (spec.while_open if PROC else 0)
    trials += [("random", None)] * spec.random
    rng.shuffle(trials)
    folder = tmp_path / "out"
    folder.mkdir()
    for how, point in trials:
        started = writers.start(kind, folder / spec.name, point if how == "inside" else "loop")
        trial = f"{kind}, kill {how} {point or ''} (seed {seed})"
        if how == "random":
            delay = rng.uniform(0.0, 1.5 * started["seconds"])  # inside the first or second write of the loop
            trial += f" after {delay * 1000:.0f} ms"
            time.sleep(delay)
            os.kill(started["pid"], signal.SIGKILL)
        elif how == "while-open":
            final = folder / spec.name
            held = _kill_while_open(started["pid"], folder, final, in_place_for=0.0 if final.is_dir() else point)
            trial += f" holding {held}"
        assert writers.ended(started) == (signal.SIGKILL, None), f"{trial}: the writer was not killed\n{writers.tail()}"
        version = _assert_intact(kind, folder, refs, trial)
        if how == "inside":
            assert version == INSIDE_LEAVES.get(point, 0), trial


@POSIX
def test_temp_files_left_by_killed_writes_are_cleared_once_stale(writers, tmp_path):
    """Each kill mid-write leaves one hidden temp file; the next write of that file clears those over an hour old."""
    from avatar_app.images import load_image, save_image_atomic

    folder = tmp_path / "out"
    folder.mkdir()
    for _ in range(3):
        started = writers.start("image", folder / "snapshot.png", "before-replace")
        assert writers.ended(started) == (signal.SIGKILL, None), writers.tail()
    left = sorted(n for n in os.listdir(folder) if n.startswith("."))
    assert len(left) == 3 and all(re.fullmatch(KINDS["image"].leftovers, n) for n in left)
    # Someone else's hidden files, and temp files of other names, are never touched.
    others = [".snapshot.png.keep", ".other.0123abcd.partial.png", ".snapshot.notahexx.partial.png"]
    for name in others:
        (folder / name).write_bytes(b"x")
    hour_ago = time.time() - 3700
    for name in left[:2] + others:
        os.utime(folder / name, (hour_ago, hour_ago))
    image = np.zeros((8, 8, 3), np.uint8)
    save_image_atomic(folder / "snapshot.png", image)
    assert sorted(os.listdir(folder)) == sorted([left[2], *others, "snapshot.png"])  # a fresh one may be live
    np.testing.assert_array_equal(load_image(folder / "snapshot.png"), image)


def test_the_gallery_does_not_list_temp_files_of_a_killed_write(tmp_path, mona_avatar):
    from avatar_app.pipeline.avatar import save_avatar
    from avatar_app.ui.library import MINE, AvatarLibrary

    library = AvatarLibrary(tmp_path, shipped_dir=tmp_path / "none")
    (tmp_path / "avatars").mkdir()
    good = save_avatar(mona_avatar, tmp_path / "avatars" / "me.avatar")
    (tmp_path / "avatars" / ".me.0123abcd.partial.avatar").write_bytes(good.read_bytes()[:1000])
    assert [e.path.name for e in library.entries() if e.kind == MINE] == ["me.avatar"]
