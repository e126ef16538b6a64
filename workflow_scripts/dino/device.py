"""Where the model runs, at what precision, and how its steps are timed there."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from workflow_scripts.errors import InputError

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def select_device(name: str) -> torch.device:
    """``auto`` picks the GPU when there is one; asking for ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but torch sees no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise InputError(f"device {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def select_precision(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 autocast on a GPU (tensor cores) and float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in PRECISIONS:
        raise InputError(f"precision {name!r} is not one of auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


class DeviceClock:
    """Accumulates time per named step.

    GPU work is asynchronous, so on CUDA the steps are timed with events on
    the stream and read once at the end; on CPU wall time is exact.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.events: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = {}
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.setdefault(name, []).append((start, end))
        else:
            began = time.perf_counter()
            yield
            self.seconds[name] += time.perf_counter() - began

    def total(self, name: str) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in self.events.get(name, [])) / 1000
        return self.seconds[name]
