"""The demo gallery's design: plates, batches, wells and what each well holds.

Known biology (compounds in MoA groups, DMSO controls on every plate, every
compound on every plate, so replicates span plates and batches) and known
technical effects per batch, so later stages can be scored against the truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from workflow_scripts.demo.synth import PHENOTYPES, BatchEffect, Phenotype

DATASET = "cpg-demo"
NEGATIVE_CONTROL = "DMSO"
PHENIX_PIXEL_SIZE_M = 5.97976e-07
CV8000_PIXEL_SIZE_M = 6.5e-07


@dataclass(frozen=True)
class Compound:
    """A perturbation: its MoA group and potency (0 = no effect, 1 = full)."""

    name: str
    moa: str
    potency: float

    def phenotype(self) -> Phenotype:
        """The MoA's phenotype with every effect scaled towards neutral by potency."""
        full = PHENOTYPES[self.moa]
        scaled = {
            f.name: 1.0 + self.potency * (getattr(full, f.name) - 1.0)
            for f in dataclasses.fields(full)
            if isinstance(getattr(full, f.name), float)
        }
        return dataclasses.replace(full, **scaled)


@dataclass(frozen=True)
class DemoPlate:
    """One plate: where it sits in the gallery and how it was imaged."""

    source: str
    batch: str
    plate: str
    microscope: str  # "phenix" or "cv8000": the two file-naming schemes
    effect: BatchEffect
    first_site: int = 1
    illum: bool = True


@dataclass(frozen=True)
class DemoLayout:
    """The whole demo gallery."""

    plates: tuple[DemoPlate, ...]
    wells: dict[str, Compound]
    sites: int = 2
    size: int = 1080
    dataset: str = DATASET


def compounds() -> list[Compound]:
    """DMSO plus two compounds (full and partial potency) per MoA group."""
    result = [Compound(NEGATIVE_CONTROL, NEGATIVE_CONTROL, 0.0)]
    for moa in sorted(m for m in PHENOTYPES if m != NEGATIVE_CONTROL):
        name = PHENOTYPES[moa].compound
        result += [Compound(name, moa, 1.0), Compound(f"{name}-analog", moa, 0.7)]
    return result


def default_wells(controls: int = 4) -> dict[str, Compound]:
    """A block of wells from A01, controls spread over it, one well per compound."""
    treated = compounds()[1:]
    control = compounds()[0]
    contents = treated[:]
    for i in range(controls):
        contents.insert(i * (len(treated) // controls + 1), control)
    columns = 4
    return {f"{'ABCDEFGH'[i // columns]}{i % columns + 1:02d}": c for i, c in enumerate(contents)}


BATCH_EFFECTS = {
    "2025_01_13_Batch1": BatchEffect(gain=1.0, vignetting=0.15, offset=0.0),
    "2025_02_10_Batch2": BatchEffect(gain=1.35, vignetting=0.35, offset=120.0),
    "2025_03_03_Batch3": BatchEffect(gain=0.8, vignetting=0.25, offset=60.0),
}


def default_layout(size: int = 1080, sites: int = 2, controls: int = 4) -> DemoLayout:
    """Two Phenix batches of two plates, and one CV8000 plate of another source."""
    b1, b2, b3 = BATCH_EFFECTS
    plates = (
        DemoPlate("source_1", b1, "DEMO101", "phenix", BATCH_EFFECTS[b1]),
        DemoPlate("source_1", b1, "DEMO102", "phenix", BATCH_EFFECTS[b1]),
        DemoPlate("source_1", b2, "DEMO201", "phenix", BATCH_EFFECTS[b2]),
        DemoPlate("source_1", b2, "DEMO202", "phenix", BATCH_EFFECTS[b2]),
        DemoPlate("source_2", b3, "DEMO301", "cv8000", BATCH_EFFECTS[b3], first_site=0, illum=False),
    )
    return DemoLayout(plates=plates, wells=default_wells(controls), sites=sites, size=size)


def small_layout(size: int = 256) -> DemoLayout:
    """A quick gallery for tests: one Phenix and one CV8000 plate, five wells.

    Two batches (one per microscope), both site-numbering conventions, one
    plate with and one without illumination functions.
    """
    full = default_layout(size=size, sites=2)
    wells = dict(list(full.wells.items())[:5])
    return DemoLayout(plates=(full.plates[0], full.plates[4]), wells=wells, sites=2, size=size)
