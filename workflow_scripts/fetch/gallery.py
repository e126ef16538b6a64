"""Where a plate's objects live in the Cell Painting Gallery layout.

``{dataset}/{source}/workspace/load_data_csv/{batch}/{plate}/`` holds
LoadData, ``{dataset}/{source}/images/{batch}/illum/{plate}/`` the
illumination functions. Plates differ in which LoadData file they carry, so
candidates are tried in a fixed order of preference.
"""

from __future__ import annotations

from dataclasses import dataclass

LOAD_DATA_NAMES = (
    "load_data_with_illum.csv",
    "load_data_with_illum.csv.gz",
    "load_data_with_illum.parquet",
    "load_data.csv",
    "load_data.csv.gz",
    "load_data.parquet",
)


@dataclass(frozen=True)
class PlateRef:
    """One plate of the gallery."""

    dataset: str
    source: str
    batch: str
    plate: str

    @property
    def prefix(self) -> str:
        return f"{self.dataset}/{self.source}"

    def load_data_keys(self) -> list[str]:
        """Candidate LoadData keys, most preferred first."""
        folder = f"{self.prefix}/workspace/load_data_csv/{self.batch}/{self.plate}"
        return [f"{folder}/{name}" for name in LOAD_DATA_NAMES]

    def illum_key(self, channel: str) -> str:
        """The gallery's illumination function of one channel."""
        return f"{self.prefix}/images/{self.batch}/illum/{self.plate}/{self.plate}_Illum{channel}.npy"
