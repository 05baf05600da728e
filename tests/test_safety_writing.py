"""Safety, writing: a write killed midway never leaves a torn file.

B. Writing. For each kind of file the app writes for the user, a subprocess writes it again and again
   (alternating two good versions) and is killed with SIGKILL: at random moments, while it holds the half-written
   file open (seen through /proc), and from inside the write itself (a patched writer kills its own process
   after part of the data is on disk). Afterwards the final name must hold one complete good version, read back
   with the app's own loader, and nothing else may appear under a visible name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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


REPO = Path(__file__).resolve().parents[1]
SCANNED = (REPO / "avatar_app", REPO / "benchmarks")


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
        code = f"from tests.test_safety_writing import _serve; _serve({str(self.prep)!r}, fork={fork})"
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
