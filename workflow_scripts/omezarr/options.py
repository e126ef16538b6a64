"""The conversion's parameters, in one place for the stage, the writer and provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workflow_scripts.errors import InputError

NGFF_VERSIONS = ("0.5", "0.4")


@dataclass(frozen=True)
class ConversionOptions:
    """How a plate is written; everything except ``workers`` changes the bytes."""

    ngff_version: str
    pyramid_levels: int
    compression_level: int
    shard_per_field: bool
    apply_illumination: bool
    workers: int

    @classmethod
    def from_config(cls, convert: dict[str, Any], workers: int) -> ConversionOptions:
        """The config's ``convert`` section, run on ``workers`` processes (the job's threads)."""
        recorded = ("ngff_version", "pyramid_levels", "compression_level", "shard_per_field", "apply_illumination")
        return cls(**{key: convert[key] for key in recorded}, workers=workers)

    def __post_init__(self) -> None:
        if self.ngff_version not in NGFF_VERSIONS:
            raise InputError(f"ngff_version must be one of {NGFF_VERSIONS}, got {self.ngff_version!r}")
        if self.pyramid_levels < 2:
            raise InputError(f"pyramid_levels must be >= 2, got {self.pyramid_levels}")
        if not 1 <= self.compression_level <= 9:
            raise InputError(f"compression_level must be 1..9, got {self.compression_level}")
        if self.shard_per_field and self.ngff_version != "0.5":
            raise InputError("shard_per_field needs NGFF 0.5 (zarr v3 sharding)")
        if self.workers < 1:
            raise InputError(f"workers must be >= 1, got {self.workers}")

    @property
    def zarr_format(self) -> int:
        return 3 if self.ngff_version == "0.5" else 2

    def recorded(self) -> dict:
        """The parameters that shape the output, for provenance (not ``workers``)."""
        params = asdict(self)
        del params["workers"]
        params["compression"] = {
            "codec": "blosc",
            "cname": "zstd",
            "clevel": self.compression_level,
            "shuffle": "bitshuffle",
        }
        del params["compression_level"]
        return params
