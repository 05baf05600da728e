"""Busy processes beside a benchmark: the CPU load a video-call program puts on the machine, made on purpose so
anyone can reproduce it (`avatar-app bench --load N`).

Each is a plain Python process spinning one CPU. None outlives the bench: they are stopped when it ends (or is
interrupted), each ends by itself when its ``limit_s`` runs out, and each ends when its parent goes away without
stopping it (its stdin pipe closes), so a killed bench leaves nothing spinning.
"""

from __future__ import annotations

import subprocess
import sys

# The child: a thread waits for stdin to close (the parent stopped it, or died), the main thread spins until then
# or until the limit. No app import: it starts in a few milliseconds and takes no memory to speak of.
_SPIN = """
import os, sys, threading, time
def watch():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    for _ in range(20000):
        n += 1
os._exit(0)
"""


class CpuLoad:
    """``processes`` busy processes while it is entered (0: none, a no-op). ``pids``: theirs, while they run."""

    def __init__(self, processes: int, limit_s: float = 600.0):
        if processes < 0:
            raise ValueError(f"--load must be 0 or more busy processes, got {processes}")
        if limit_s <= 0:
            raise ValueError(f"the load's time limit must be positive, got {limit_s:g} s")
        self.processes = processes
        self.limit_s = limit_s
        self._children: list[subprocess.Popen] = []

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self._children]

    def start(self) -> None:
        try:
            for _ in range(self.processes):
                self._children.append(subprocess.Popen(
                    [sys.executable, "-c", _SPIN, repr(self.limit_s)], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 2.0) -> None:
        """Every child is gone when this returns: asked to end (stdin closed), then killed if it did not."""
        children, self._children = self._children, []
        for child in children:
            try:
                child.stdin.close()
            except OSError:  # already gone
                pass
        for child in children:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def __enter__(self) -> CpuLoad:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
