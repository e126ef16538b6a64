"""Fetch throughput: the concurrent engine against a plain sequential loop.

On a real bucket most of the time of a small GET is the round trip, so the
fetch stage is only as fast as the number of requests it keeps in flight.
This puts a local S3 server (moto) behind the fault proxy with a fixed
latency added to every request (no faults), uploads many small objects and
times, over the same keys:

* the server alone, without added latency, through ``download_objects``:
  the most requests per second the local server can answer, which bounds
  every other row;
* a plain sequential boto3 loop (get_object, read, write the file);
* ``download_objects`` with N threads.

"ideal" is objects x latency / concurrency: the time if the added latency
were the only cost. No client can beat the server either, so "bound" is
the larger of the ideal and the server-alone time. Prints a Markdown table. Run from the repository root::

    .venv/bin/python benchmarks/fetch.py --objects 600 --size 65536 --latency 0.1 --concurrency 32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.support

from workflow_scripts.demo.s3server import S3Server
from workflow_scripts.fetch.objects import download_objects
from workflow_scripts.fetch.s3 import S3Location, make_client
from workflow_scripts.paths import cache_path

BUCKET = "fetch-benchmark"
COLUMNS = (
    "method",
    "objects",
    "seconds",
    "objects/s",
    "speed-up vs loop",
    "ideal seconds",
    "ratio to ideal",
    "bound seconds",
    "ratio to bound",
)


@dataclass
class Row:
    method: str
    objects: int
    seconds: float
    concurrency: int | None  # None: no added latency, so no ideal time


def upload(server: S3Server, count: int, size: int) -> dict[S3Location, bytes]:
    """``count`` objects of ``size`` random bytes, public-read."""
    client = server.admin_client()
    client.create_bucket(Bucket=BUCKET, ACL="public-read")
    objects = {S3Location(BUCKET, f"images/r{i // 9:03d}/f{i % 9}.tiff"): os.urandom(size) for i in range(count)}
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda item: client.put_object(Bucket=BUCKET, Key=item[0].key, Body=item[1], ACL="public-read"),
                objects.items(),
            )
        )
    return objects


@contextmanager
def latency_proxy(upstream: str, latency: float) -> Iterator[str]:
    """The fault proxy in its own process, as a remote server would be; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faultproxy", "--upstream", upstream, "--latency", str(latency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        endpoint = process.stdout.readline().strip()
        if not endpoint.startswith("http://"):
            raise RuntimeError(f"fault proxy did not start (exit code {process.poll()})")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def sequential_loop(client, locations: list[S3Location], cache_dir: Path) -> None:
    """What a first script does: one GET after another, each written to a file."""
    for location in locations:
        body = client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        path = cache_path(cache_dir, location.bucket, location.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def timed(run: Callable[[Path], None], objects: dict[S3Location, bytes], repeats: int = 1) -> float:
    """Best seconds of ``repeats`` runs, each filling a fresh cache; checks every file.

    The best of several runs is the least disturbed by other work on the
    machine, which is what a comparison with the ideal needs.
    """
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="fetch-benchmark-") as folder:
            started = time.perf_counter()
            run(Path(folder))
            best = min(best, time.perf_counter() - started)
            for location, data in objects.items():
                if cache_path(folder, location.bucket, location.key).read_bytes() != data:
                    raise RuntimeError(f"{location}: downloaded bytes differ from the upload")
    return best


def table(rows: list[Row], latency: float) -> str:
    loop = next(row for row in rows if row.method.startswith("sequential"))
    server = next(row for row in rows if row.concurrency is None)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" + "|---:" * (len(COLUMNS) - 1) + "|"]
    for row in rows:
        cells = [row.method, str(row.objects), f"{row.seconds:.2f}", f"{row.objects / row.seconds:.0f}"]
        cells.append(f"{loop.seconds / row.seconds:.1f}x")
        if row.concurrency is None:
            cells += ["-"] * 4
        else:
            ideal = row.objects * latency / row.concurrency
            bound = max(ideal, server.seconds)
            cells += [f"{ideal:.2f}", f"{row.seconds / ideal:.2f}", f"{bound:.2f}", f"{row.seconds / bound:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=600)
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per object")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every request")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (the slow loop runs once)")
    args = parser.parse_args()
    n = args.concurrency
    with S3Server() as server:
        objects = upload(server, args.objects, args.size)
        keys = list(objects)
        direct = make_client(server.endpoint_url, anonymous=True, max_pool_connections=n)
        rows = [
            Row(
                f"server alone, download_objects x{n}",
                len(keys),
                timed(lambda d: download_objects(direct, keys, d, concurrency=n), objects, args.repeats),
                None,
            )
        ]
        with latency_proxy(server.endpoint_url, args.latency) as endpoint:
            client = make_client(endpoint, anonymous=True, max_pool_connections=n)
            rows.append(
                Row("sequential boto3 loop", len(keys), timed(lambda d: sequential_loop(client, keys, d), objects), 1)
            )
            rows.append(
                Row(
                    f"download_objects x{n}",
                    len(keys),
                    timed(lambda d: download_objects(client, keys, d, concurrency=n), objects, args.repeats),
                    n,
                )
            )
    print(
        f"{args.objects} objects x {args.size} bytes, {args.latency * 1000:.0f} ms added per request, "
        f"best of {args.repeats} (loop: 1 run)\n"
    )
    print(table(rows, args.latency))


if __name__ == "__main__":
    main()
