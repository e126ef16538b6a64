"""One run at a time per results directory, whichever working directory it starts from.

Snakemake locks a run's outputs in its working directory (``.snakemake/locks``),
so two runs started from two working directories that share one results
directory (common on HPC, where results sit on a shared filesystem) do not see
each other and would overwrite each other's files. The workflow therefore takes
its own lock, a file in the results directory naming who holds it, when a run
starts, and drops it when the run ends.

A run killed outright (SIGKILL, a node lost) leaves its lock behind. On the
same host the next run sees that the holder's process is gone and takes the
lock over with a warning. From another host it cannot tell, so it refuses and
says which file to delete once the other run is known to be dead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from workflow_scripts.errors import InputError

log = logging.getLogger(__name__)

LOCK_FILE = ".workflow.lock"


class RunLockError(InputError):
    """Another run holds the results directory."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough to tell a live run from a dead one on the same host."""

    host: str
    pid: int
    process_start: str
    workdir: str
    since: str

    @classmethod
    def this_process(cls, workdir: str | Path) -> Holder:
        pid = os.getpid()
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        return cls(socket.gethostname(), pid, _process_start(pid), str(Path(workdir).resolve()), since)

    def is_alive(self) -> bool | None:
        """Whether the holding process still runs; None where that cannot be told (another host)."""
        if self.host != socket.gethostname():
            return None
        return _process_start(self.pid) == self.process_start != ""

    def describe(self) -> str:
        return f"a run started {self.since} on host {self.host} (pid {self.pid}) from {self.workdir}"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot, or "" if there is no such process.

    With the pid, it names one process: a pid reused by a later process has
    another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def acquire(results_dir: str | Path, workdir: str | Path) -> Path:
    """Take the results directory's lock for this process, or raise naming the run that holds it."""
    path = Path(results_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Holder.this_process(workdir)
    for _ in range(2):
        try:
            with open(path, "x") as handle:
                json.dump(asdict(me), handle)
            return path
        except FileExistsError:
            holder = _read(path)
        if holder is not None and (holder.host, holder.pid) == (me.host, me.pid):
            return path
        alive = holder.is_alive() if holder is not None else False
        if alive is not False:
            raise RunLockError(
                f"results directory {Path(results_dir).resolve()} is in use by {holder.describe()}. "
                "Two runs writing one results directory overwrite each other's outputs: wait for that run "
                f"to end. If it has died (killed, or its node lost), delete {path.resolve()} and start again."
            )
        what = holder.describe() if holder is not None else "an unreadable lock"
        log.warning("taking over the lock of %s, which is no longer running: %s", what, path)
        path.unlink(missing_ok=True)
    raise RunLockError(f"could not take the lock {path}: another run took it at the same moment")


def release(results_dir: str | Path) -> None:
    """Drop the lock if this process holds it; another run's lock is left alone."""
    path = Path(results_dir) / LOCK_FILE
    holder = _read(path)
    if holder is not None and (holder.host, holder.pid) == (socket.gethostname(), os.getpid()):
        path.unlink(missing_ok=True)


def _read(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
