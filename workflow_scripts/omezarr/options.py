"""The conversion's parameters, in one place for the CLI, the writer and provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass

NGFF_VERSIONS = ("0.5", "0.4")


@dataclass(frozen=True)
class ConversionOptions:
    """How a plate is written; everything except ``workers`` changes the bytes."""

    ngff_version: str = "0.5"
    pyramid_levels: int = 3
    compression_level: int = 1
    shard_per_field: bool = False
    apply_illumination: bool = False
    workers: int = 1

    def __post_init__(self) -> None:
        if self.ngff_version not in NGFF_VERSIONS:
            raise ValueError(f"ngff_version must be one of {NGFF_VERSIONS}, got {self.ngff_version!r}")
        if self.pyramid_levels < 2:
            raise ValueError(f"pyramid_levels must be >= 2, got {self.pyramid_levels}")
        if not 1 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 1..9, got {self.compression_level}")
        if self.shard_per_field and self.ngff_version != "0.5":
            raise ValueError("shard_per_field needs NGFF 0.5 (zarr v3 sharding)")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

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
