"""Throughput of the DINO embedding stage on a synthetic OME-Zarr plate.

Writes a plate of uint16 5-channel fields (cell-like content) to a
temporary folder, embeds it end to end once per precision, and in the same
run times a bare ViT forward on random tensors at the same batch size, so
the model step can be read as a fraction of what the network alone
achieves. Prints one markdown table.

    python benchmarks/embed.py                         # GPU: 384 fields, bf16
    python benchmarks/embed.py --fields 6 --precisions float32 bfloat16   # CPU
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.support

from tests.support.dino_synthetic import derived_fields, synthetic_field, write_plate
from tests.support.settings import make_recipe, make_run_options
from workflow_scripts.dino.device import select_device, select_precision
from workflow_scripts.dino.pipeline import PlateEmbeddings, embed_plate
from workflow_scripts.dino.vit import build_vit
from workflow_scripts.wells import ROWS

PLATE_CHANNELS = ("DNA", "AGP", "RNA", "ER", "Mito")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=384, help="fields in the synthetic plate")
    parser.add_argument("--sites-per-well", type=int, default=9)
    parser.add_argument("--size", type=int, default=1080, help="field height and width in pixels")
    parser.add_argument("--distinct", type=int, default=8, help="distinct generated fields; the rest are flips/shifts")
    parser.add_argument("--arch", default="vit_small")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=["auto"], help="float32, bfloat16 or auto")
    parser.add_argument("--bare-iterations", type=int, default=10)
    parser.add_argument("--plate", help="reuse or keep the plate at this path instead of a temporary folder")
    return parser.parse_args()


def make_plate(path: Path, args: argparse.Namespace) -> float:
    """Write the synthetic plate (one pyramid level: the stage reads level 0 only); return seconds."""
    began = time.perf_counter()
    rng = np.random.default_rng(0)
    base = [synthetic_field(rng, size=args.size) for _ in range(min(args.distinct, args.fields))]
    fields = list(derived_fields(base, args.fields, rng))
    wells: dict[str, list[np.ndarray]] = {}
    for index in range(math.ceil(args.fields / args.sites_per_well)):
        well = f"{ROWS[index // 24 % 16]}{index % 24 + 1:02d}"
        wells[well] = fields[index * args.sites_per_well : (index + 1) * args.sites_per_well]
    write_plate(path, wells, PLATE_CHANNELS, levels=1, workers=args.workers)
    return time.perf_counter() - began


class GpuUtilisation:
    """Mean GPU utilisation reported by nvidia-smi while the block runs; None without a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.enabled = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []

    def __enter__(self) -> GpuUtilisation:
        if self.enabled:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.process.terminate()
            self.process.wait()
            self.reader.join(timeout=5)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def bare_forward_rate(model: torch.nn.Module, batch: int, device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Crops/s of the network alone on random input already on the device."""
    crops = torch.randn(batch, 5, 224, 224, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        model(crops)
        synchronize(device)
        began = time.perf_counter()
        for _ in range(n):
            model(crops)
        synchronize(device)
    return batch * n / (time.perf_counter() - began)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def row(result: PlateEmbeddings, bare: float, utilisation: float | None, device_name: str) -> list[str]:
    t = result.times
    model_rate = result.n_crops_kept / t.model if t.model else float("nan")
    return [
        device_name,
        result.precision,
        str(result.n_fields_read),
        str(result.n_crops_kept),
        f"{t.wall:.2f}",
        f"{result.n_fields_read / t.wall:.1f}",
        f"{result.n_crops_kept / t.wall:.1f}",
        f"{t.read:.2f} / {t.read_wait:.2f}",
        f"{t.preprocess:.2f}",
        f"{t.model:.2f}",
        f"{model_rate:.1f}",
        f"{bare:.1f}",
        f"{100 * model_rate / bare:.0f} %",
        "n/a" if utilisation is None else f"{utilisation:.0f} %",
    ]


HEADER = [
    "device",
    "precision",
    "fields",
    "crops",
    "wall s",
    "fields/s",
    "crops/s",
    "read s (workers / waited)",
    "preprocess s",
    "model s",
    "model crops/s",
    "bare forward crops/s",
    "model / bare",
    "GPU util",
]


def main() -> None:
    args = parse_args()
    device = select_device(args.device)
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    workdir = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    plate = Path(args.plate) if args.plate else workdir / "bench.ome.zarr"
    try:
        written = make_plate(plate, args) if not plate.exists() else 0.0
        model = build_vit(args.arch)
        rows = []
        for precision in args.precisions:
            dtype = select_precision(precision, device)
            bare = bare_forward_rate(model.to(device), args.batch_size, device, dtype, args.bare_iterations)
            options = make_run_options(batch_size=args.batch_size, workers=args.workers, device=str(device), precision=str(dtype).removeprefix("torch."))
            with GpuUtilisation(device) as utilisation:
                result = embed_plate(str(plate), model, make_recipe(), options)
            rows.append(row(result, bare, utilisation.mean, device_name))
        if device.type != "cuda":
            rows.append(["GPU", "bfloat16", *["not measured"] * (len(HEADER) - 2)])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    source = f"written in {written:.1f} s" if written else f"reused from {plate}"
    print(f"plate: {args.fields} fields of 5×{args.size}² uint16, {source}")
    print(f"model: {args.arch}, batch {args.batch_size}, {args.workers} reader threads")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
