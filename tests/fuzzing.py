"""Shared tools of the fuzz tests: reproducible hypothesis settings, a time limit, mutations of valid files."""

from __future__ import annotations

import itertools
import signal
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from avatar_app.errors import AvatarAppError


def fuzz(n: int):
    """Hypothesis settings for `n` reproducible cases that may be slow and use fixtures."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


class Hang(Exception):
    """A loader took longer than any file this size should take: not an AvatarAppError, so the case fails."""


@contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise Hang(f"still loading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(load, path: Path, *, names: str | None = None, seconds: float = 20):
    """Run a loader: its result, or the AvatarAppError it raised after checking that its message is one line
    that names the file. Any other exception propagates and fails the case."""
    try:
        with time_limit(seconds):
            return load(path)
    except AvatarAppError as err:
        text = str(err)
        assert "\n" not in text and "\r" not in text, f"message is not one line: {text!r}"
        assert (names or path.name) in text, f"message does not name {names or path.name}: {text!r}"
        return err


_counter = itertools.count()


class Samples(dict):
    """Valid files to mutate, by name; a short repr keeps a failing case's report readable."""

    def __repr__(self) -> str:
        return f"<samples: {', '.join(self)}>"


def case_dir(root: Path) -> Path:
    """A fresh folder per generated case (hypothesis reuses one tmp_path for all of a test's cases)."""
    d = root / f"case{next(_counter)}"
    d.mkdir()
    return d


@st.composite
def mutated(draw, original: bytes, max_ops: int = 4) -> bytes:
    """Bit flips, truncation, overwritten, inserted and deleted runs; positions favour both ends, where the
    headers, indexes and zip directories are."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_ops))):
        if not data:
            break
        n = len(data)
        pos = draw(st.one_of(st.integers(0, min(n - 1, 512)), st.integers(max(0, n - 512), n - 1),
                             st.integers(0, n - 1)))
        kind = draw(st.sampled_from(["flip", "flip", "truncate", "overwrite", "insert", "delete"]))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos:pos + draw(st.integers(1, 64))]
    return bytes(data)


def junk_with_magic(magics: list[bytes]):
    """Random bytes, often behind a real format's magic number so the parser gets past its first check."""
    return st.tuples(st.sampled_from([b""] + magics), st.binary(max_size=2048)).map(lambda t: t[0] + t[1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


_tripped: list[str] = []


def _trip(what: str) -> str:
    _tripped.append(what)
    return what


class Tripwire:
    """Unpickling this records it: a loader that unpickles anything is caught, whatever it then does."""

    def __reduce__(self):
        return (_trip, ("unpickled",))


def one_error_line(capsys, code: int, path: Path) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("avatar-app: error:")]
    assert len(errors) == 1 and str(path) in errors[0], err
