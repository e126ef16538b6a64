"""What QC counts as a bad field, and the channels it looks at; one object for metrics, flags and the CLI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QcThresholds:
    """What counts as a bad field; the defaults suit 16-bit JUMP fields at 20x."""

    focus_channel: str = "DNA"
    dna_channel: str = "DNA"
    focus_tolerance: float = 0.75
    saturation_level: int = 65535
    max_saturated_fraction: float = 0.01
    min_nucleus_area: int = 80

    def __post_init__(self) -> None:
        if self.focus_tolerance <= 0:
            raise ValueError(f"focus_tolerance must be > 0, got {self.focus_tolerance}")
        if not 0 < self.saturation_level <= 65535:
            raise ValueError(f"saturation_level must be in 1..65535, got {self.saturation_level}")
        if not 0 <= self.max_saturated_fraction < 1:
            raise ValueError(f"max_saturated_fraction must be in [0, 1), got {self.max_saturated_fraction}")
        if self.min_nucleus_area < 1:
            raise ValueError(f"min_nucleus_area must be >= 1 pixel, got {self.min_nucleus_area}")
