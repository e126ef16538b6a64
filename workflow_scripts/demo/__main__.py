"""Run the embedded demo: build the synthetic gallery, serve it, run the workflow.

``python -m workflow_scripts.demo run`` is what ``make demo`` calls;
``serve`` only starts the local S3 server with the gallery, for trying the
workflow by hand against it; ``separation`` builds the gallery and prints
how well its treated wells separate by batch and by MoA before and after
per-plate normalization (``--layout small`` for the tests' gallery).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from workflow_scripts.demo.build import BUCKET, build_gallery
from workflow_scripts.demo.design import DemoLayout, default_layout, small_layout
from workflow_scripts.demo.s3server import S3Server, upload_tree
from workflow_scripts.demo.separation import FEATURE_SETS, separation_table
from workflow_scripts.evaluate.summary import run_summary
from workflow_scripts.logs import configure_logging

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("workflow_scripts.demo")
LAYOUTS = {"default": default_layout, "small": small_layout}
#: Where each layout's gallery is written unless --root says otherwise.
ROOTS = {"default": REPO / "demo_data", "small": REPO / "demo_data" / "small"}


def serve_gallery(server: S3Server, gallery: Path) -> int:
    """Upload the gallery into the server's bucket; returns the object count."""
    return upload_tree(server.admin_client(), BUCKET, gallery)


def snakemake_command(root: Path, cores: str, extra: Sequence[str]) -> list[str]:
    """The Snakemake call of the demo: demo config, local profile, the gallery's plate table.

    The plate table goes into a second config file, as ``--config`` would
    turn nested values into strings.
    """
    overrides = root / "demo_overrides.yaml"
    overrides.write_text(yaml.safe_dump({"plates": str(_from_repo(root / "plates.csv"))}))
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config" / "demo.yaml"), str(overrides),
        "--profile", str(REPO / "profiles" / "local"),
        "--cores", cores,
        *extra,
    ]


def _from_repo(path: Path) -> Path:
    """``path`` relative to the repository (Snakemake's working directory) where it lies inside it.

    The default gallery's plate table is then named as ``config/demo.yaml``
    names it, so a plain ``snakemake --configfile config/demo.yaml`` after
    the demo sees the same parameters and has nothing to do.
    """
    resolved = path.resolve()
    return resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else resolved


def job_environment(endpoint_url: str) -> dict[str, str]:
    """The environment of the demo's jobs.

    Jobs call ``python``: it must be this interpreter (the project's venv).
    The server's address travels as ``AWS_ENDPOINT_URL``, which every S3
    client of the workflow honours, rather than as a rule parameter: the
    server gets a new port each time, and a changed parameter would make
    Snakemake recompute every finished plate.
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "AWS_ENDPOINT_URL": endpoint_url}


def outputs_summary(results: Path) -> str:
    """What the run produced, per plate and across plates, for the closing message."""
    lines = []
    for plate in sorted((results / "plates").glob("*/*/*/*")):
        names = sorted(p.name for p in plate.iterdir())
        lines.append(f"  {plate.relative_to(results)}: {', '.join(names)}")
    for folder in ("collection", "report"):
        if (results / folder).exists():
            lines.append(f"  {folder}/: {', '.join(sorted(p.name for p in (results / folder).iterdir()))}")
    return "\n".join(lines)


def layout_of(args: argparse.Namespace) -> DemoLayout:
    """The chosen layout, at the chosen field size or the layout's own."""
    make = LAYOUTS[args.layout]
    return make(size=args.size) if args.size else make()


def separation(args: argparse.Namespace, layout: DemoLayout, gallery: Path) -> int:
    """Print the silhouettes of the treated wells by batch and by MoA, as a markdown table."""
    table = separation_table(layout, gallery, tuple(args.features))
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return 0


def run(args: argparse.Namespace) -> int:
    layout = layout_of(args)
    started = time.monotonic()
    gallery = build_gallery(layout, args.root)
    log.info("demo gallery ready in %s (%.0f s)", gallery, time.monotonic() - started)
    if args.command == "separation":
        return separation(args, layout, gallery)
    with S3Server() as server:
        count = serve_gallery(server, gallery)
        log.info("serving %d objects at %s", count, server.endpoint_url)
        if args.command == "serve":
            print(f"S3 endpoint: {server.endpoint_url} (bucket {BUCKET}); Ctrl-C stops it", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        command = snakemake_command(args.root.resolve(), args.cores, args.snakemake_args)
        result = subprocess.run(command, cwd=REPO, env=job_environment(server.endpoint_url))
    results = REPO / "results" / "demo"
    if result.returncode == 0:
        print(f"\nDemo finished in {time.monotonic() - started:.0f} s. Results under {results}:")
        print(outputs_summary(results))
        print(f"Ground truth (perturbations, MoAs, batch effects): {args.root / 'ground_truth'}")
        print(run_summary(results))
    return result.returncode


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.demo", description=__doc__)
    parser.add_argument("command", choices=["run", "serve", "separation"])
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="default",
                        help="separation only: the small layout is the tests' gallery")
    parser.add_argument("--root", type=Path, help="where the gallery is written (default: demo_data, or demo_data/small)")
    parser.add_argument("--size", type=int, help="field size in pixels (default: the layout's, 1080 or 384)")
    parser.add_argument("--features", nargs="+", choices=sorted(FEATURE_SETS), default=["cellprofiler"],
                        help="feature sets the separation command measures")
    parser.add_argument("--cores", default="all")
    parser.add_argument("snakemake_args", nargs="*", help="passed on to Snakemake (after --)")
    args = parser.parse_args(argv)
    if args.layout != "default" and args.command != "separation":
        parser.error("--layout applies to separation only: the demo runs the default layout")
    args.root = args.root or ROOTS[args.layout]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
