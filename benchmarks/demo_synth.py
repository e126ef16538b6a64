"""Time the synthetic site renderer: seconds per 1080² five-channel site, per phenotype.

The demo gallery renders ~100 sites, so a site must take well under a
second on one core. Run pinned to one core, e.g.
``taskset -c 0 .venv/bin/python benchmarks/demo_synth.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from workflow_scripts.demo.synth import PHENOTYPES, BatchEffect, render_site


def time_site(seed: int, name: str, batch: BatchEffect, size: int) -> tuple[float, float]:
    """Wall and CPU seconds of one render."""
    wall, cpu = time.perf_counter(), time.process_time()
    render_site(seed, PHENOTYPES[name], batch, size)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10, help="sites rendered per phenotype")
    parser.add_argument("--size", type=int, default=1080, help="field edge, px")
    args = parser.parse_args()
    # the costliest batch: a nonlinear response and a defocus blur on top of the linear effects
    batch = BatchEffect(gain={"DNA": 1.2, "Mito": 0.8}, vignetting=0.3, offset=150.0, gamma=0.8, blur=1.0)
    render_site(0, PHENOTYPES["DMSO"], batch, args.size)  # warm-up: imports, allocator
    print("| phenotype | sites | size | wall s/site (median) | CPU s/site (median) | wall s/site (max) |")
    print("|---|---|---|---|---|---|")
    for name in PHENOTYPES:
        times = [time_site(seed, name, batch, args.size) for seed in range(args.sites)]
        walls, cpus = zip(*times, strict=True)
        print(
            f"| {name} | {args.sites} | {args.size} | {statistics.median(walls):.3f} | "
            f"{statistics.median(cpus):.3f} | {max(walls):.3f} |"
        )


if __name__ == "__main__":
    main()
