"""Per-well work in processes, each strictly single-threaded.

Processes rather than threads: TIFF parsing, pyramids and zarr's chunk
bookkeeping hold the GIL, so threads do not scale. Each process writes only
its own wells' chunks, so no two writers touch one zarr object. ``workers``
is then the true CPU count used: zarr's codec pool and blosc run one
thread, which also makes ``workers=1`` a faithful single-core baseline.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import numcodecs
import zarr

Job = TypeVar("Job")
Result = TypeVar("Result")


def single_threaded() -> None:
    """Make zarr and blosc in this process use one thread."""
    zarr.config.set({"threading.max_workers": 1})
    numcodecs.blosc.use_threads = False
    numcodecs.blosc.set_nthreads(1)


class WorkerPool:
    """``workers`` processes (or this process alone when 1), as a context manager.

    Enter it before any zarr I/O: the children are forked at once, while the
    parent has no zarr thread that a fork could copy in a locked state, and
    they start without re-importing anything (spawning would cost seconds).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        single_threaded()
        if self.workers > 1:
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=single_threaded)
            self._pool.submit(int).result()  # forks every worker now
        return self

    def map(self, func: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        """``[func(job) for job in jobs]``, results in job order, one job per worker at a time."""
        if self._pool is None:
            return [func(job) for job in jobs]
        return list(self._pool.map(func, jobs))

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
