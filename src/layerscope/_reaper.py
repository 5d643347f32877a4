"""Ends what a killed sweep driver leaves running: ``python -m layerscope._reaper DRIVER_PID``.

A driver that starts a local Ray and is then killed with SIGKILL cannot shut Ray
down; Ray's raylet and GCS then exit by themselves, but the raylet's agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``, about 190 MB) are left to
init and run on. This process, started by the driver beside its Ray, notes the
driver's descendants every second; once the driver is gone (this process is
handed to another parent), it waits for Ray's own clean-up, then ends the noted
processes that still run (SIGTERM, then SIGKILL), each checked by its start time
so that a reused pid is never hit. Standard library only (it starts in
milliseconds and holds a few MB); Linux's /proc only, elsewhere it does nothing.
Written by hand: neither Ray nor the standard library offers it (psutil would,
but is not a dependency).
"""

from __future__ import annotations

import os
import signal
import sys
import time

_GRACE = 5.0  # seconds for Ray's own processes to notice the driver's death and exit


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # after the command name, which may hold spaces and ')'
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every process below ``root``, as pid -> start time."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found: dict[int, int] = {}
    stack = [root]
    while stack:
        for pid, start in children.get(stack.pop(), ()):
            if pid not in found:
                found[pid] = start
                stack.append(pid)
    return found


def _signal_all(processes: dict[int, int], signum: int) -> int:
    """Send ``signum`` to those of ``processes`` that still run (same pid, same start time); how many."""
    sent = 0
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signum)
                sent += 1
            except OSError:
                pass
    return sent


def watch(driver: int, period: float = 1.0) -> None:
    me = os.getpid()
    seen: dict[int, int] = {}
    while os.getppid() == driver:
        seen.update(descendants(driver))
        seen.pop(me, None)
        time.sleep(period)
    time.sleep(_GRACE)
    if _signal_all(seen, signal.SIGTERM):
        time.sleep(3.0)
        _signal_all(seen, signal.SIGKILL)


if __name__ == "__main__":
    if os.path.isdir("/proc/self"):
        watch(int(sys.argv[1]))
