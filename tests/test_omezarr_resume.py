"""A conversion killed mid-plate, then rerun, gives the plate an uninterrupted run gives."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from tests.support.sample_plate import real_fields, sample_fields, write_fetched_plate
from tests.support.settings import conversion_options
from workflow_scripts.omezarr.reader import open_plate
from workflow_scripts.omezarr.writer import convert_plate, temp_path

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
WELLS = [f"{row}{column:02d}" for row in "ABC" for column in range(1, 5)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fetched(shared_fixtures, tmp_path_factory):
    real = real_fields(shared_fixtures / "jump-pixels", CHANNELS)[0]
    fields = sample_fields(real, WELLS, ["1", "2"], (320, 320))
    return write_fetched_plate(tmp_path_factory.mktemp("fetched"), fields, CHANNELS)


@pytest.fixture(scope="module")
def reference(fetched, tmp_path_factory):
    output = tmp_path_factory.mktemp("reference") / "PLATE1.ome.zarr"
    return convert_plate(fetched.load_data, fetched.cache_dir, output, CHANNELS, conversion_options()).output


def _cli(fetched, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workflow_scripts.omezarr",
        "--settings",
        json.dumps({"channels": list(CHANNELS), "cache_dir": str(fetched.cache_dir)}),
        "--input",
        f"load_data={fetched.load_data}",
        "--output",
        f"plate={output}",
        "--threads",
        "1",
    ]


def _complete_wells(temp: Path) -> int:
    """Wells whose status attribute, written last, is on disk."""
    return sum(
        "conversion" in (well / "zarr.json").read_text() for well in temp.glob("*/*") if (well / "zarr.json").is_file()
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_identical(plate: Path, reference: Path) -> None:
    ours, theirs = _tree(plate), _tree(reference)
    assert sorted(ours) == sorted(theirs), "same files"
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert not differing, f"files differ: {differing[:10]}"


def test_killed_conversion_resumes_to_an_identical_plate(fetched, reference, tmp_path, caplog):
    output = tmp_path / "PLATE1.ome.zarr"
    temp = temp_path(output)
    process = subprocess.Popen(_cli(fetched, output), cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if temp.is_dir() and _complete_wells(temp) >= 1:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the conversion was killed, not finished"
    assert not output.exists(), "a killed run leaves nothing that looks complete"
    written = _complete_wells(temp)
    assert 1 <= written < len(WELLS)

    caplog.set_level(logging.INFO)
    result = convert_plate(fetched.load_data, fetched.cache_dir, output, CHANNELS, conversion_options())
    assert result.resumed_wells == written
    assert f"resuming, {written} of {len(WELLS)} wells already written" in caplog.text
    assert not temp.exists()
    _assert_identical(output, reference)
    assert len(open_plate(output).wells) == len(WELLS)


def test_leftovers_of_other_inputs_and_an_older_plate_are_replaced(fetched, reference, tmp_path, caplog):
    output = tmp_path / "PLATE1.ome.zarr"
    output.mkdir()
    (output / "old-file").write_text("from an earlier run")
    stale = zarr.open_group(temp_path(output), mode="w")
    stale.attrs["provenance"] = {"conversion": {"pyramid_levels": 5}}
    stale.create_group("A").create_group("1").attrs["conversion"] = {"fields": []}
    convert_plate(fetched.load_data, fetched.cache_dir, output, CHANNELS, conversion_options())
    assert any("discarding" in message for message in caplog.messages)
    _assert_identical(output, reference)
