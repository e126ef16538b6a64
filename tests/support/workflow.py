"""Running the real Snakemake workflow from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def plate_dir(results: str | Path, dataset: str, source: str, batch: str, plate: str) -> Path:
    """A plate's output folder, as DESIGN.md and the README give it."""
    return Path(results) / "plates" / dataset / source / batch / plate


def venv_environment() -> dict[str, str]:
    """This interpreter's environment first on PATH, so jobs' ``python`` is ours."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


def snakemake_command(config_files: list[Path], workdir: Path, *args: str) -> list[str]:
    """The workflow's Snakefile run on ``config_files`` in ``workdir``, as tests start it."""
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--configfile", *map(str, config_files), "--directory", str(workdir), *args,
    ]  # fmt: skip


def run_snakemake(
    results: Path,
    plates: Path,
    endpoint_url: str,
    *args: str,
    config: dict | None = None,
    check: bool = True,
    base: Path | None = REPO / "config" / "demo.yaml",
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> subprocess.CompletedProcess:
    """Snakemake on ``base`` (the demo config; None for none) against the local S3 server, in a subprocess.

    Its working directory is ``workdir``, by default the results directory.
    """
    gallery = {"bucket": "cellpainting-gallery", "endpoint_url": endpoint_url, "anonymous": True}
    overrides = {"results_dir": str(results), "plates": str(plates), "gallery": gallery, **(config or {})}
    results.mkdir(parents=True, exist_ok=True)
    override_file = results / "test_overrides.yaml"
    override_file.write_text(yaml.safe_dump(overrides))
    command = snakemake_command([*([base] if base else []), override_file], workdir or results, "--cores", "2", *args)
    environment = {**venv_environment(), **(env or {})}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=environment)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
        )
    return result


def job_counts(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Snakemake's own job summary ("Job stats") of a run: jobs per rule, ``total`` left out."""
    text = result.stdout + result.stderr
    if "Job stats:" not in text:
        return {}
    lines = text[text.index("Job stats:") :].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts
