"""The demo gallery's design: plates, batches, wells and what each well holds.

Known biology (compounds in MoA groups, DMSO negative controls and a
positive control on every plate, every compound on every plate, so
replicates span plates and batches) and known technical effects at every
level real plates have them: sites (their own cells), wells (seeding and
staining variation, the plate-edge effect), plates (small differences
within a batch) and batches (optics and a nonlinear intensity response,
defocus, and a batch × treatment interaction). Later stages are scored
against this truth; ``effects`` describes each effect and its size, and the
builder writes it to ``ground_truth/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from workflow_scripts.demo.synth import CHANNELS, PHENOTYPES, RESPONSE_REFERENCE_ADU, BatchEffect, Phenotype

DATASET = "cpg-demo"
NEGATIVE_CONTROL = "DMSO"
PHENIX_PIXEL_SIZE_M = 5.97976e-07
CV8000_PIXEL_SIZE_M = 6.5e-07
PLATE_ROWS, PLATE_COLUMNS = 16, 24  # a 384-well plate, as in JUMP

# --- Sizes of the technical effects below the batch (documented in EFFECTS) ---
#: Well-to-well seeding and staining variation (sd of the log factor).
WELL_DENSITY_SD = 0.10
WELL_STAIN_SD = 0.03
#: Plate-to-plate variation within a batch: seeding, and per-channel staining/exposure.
PLATE_DENSITY_SD = 0.05
PLATE_GAIN_SD = 0.03
#: Plate-edge effect (evaporation): loss of cells and of staining in the outermost
#: ring of wells, halving with each ring further in.
EDGE_CELL_LOSS = 0.20
EDGE_STAIN_LOSS = 0.08

# --- Batch × treatment interaction ---
# Cells of each batch are in their own state (passage, confluence, serum
# lot), and respond to any active compound with that state's own stress
# response on top of the compound's MoA, scaled by its potency. DMSO wells
# never show it, so normalizing against them cannot remove it, as in JUMP.
#: No response beyond the MoA.
NO_RESPONSE = Phenotype("none", "-")
#: Sparse cells: larger, more irregular cells whose nuclei swell and stain less.
SPREADING_RESPONSE = Phenotype(
    "spreading",
    "-",
    nucleus_scale=1.08,
    dna_intensity=0.9,
    cell_scale=1.12,
    shape_irregularity=1.4,
)
#: Confluent cells: fewer, smaller, rounder cells with condensed nuclei, ER stress.
CYTOTOXIC_RESPONSE = Phenotype(
    "cytotoxic",
    "-",
    nucleus_scale=0.85,
    dna_intensity=1.3,
    cell_density=0.85,
    cell_scale=0.85,
    shape_irregularity=0.6,
    mito_intensity=0.8,
    er_intensity=1.3,
)
#: Cells at high passage: hyperpolarised mitochondria, more stress fibres,
#: coarser chromatin, less ER, slightly spread cells.
METABOLIC_RESPONSE = Phenotype(
    "metabolic",
    "-",
    texture=1.25,
    cell_scale=1.1,
    agp_fibres=1.6,
    mito_intensity=1.4,
    er_intensity=0.75,
)

#: Row-major positions of the controls in the 4 × 4 block of wells: DMSO in the
#: corners and on the inner anti-diagonal, the positive control on the inner diagonal.
NEGCON_SLOTS = (0, 3, 6, 9, 12, 15)
POSCON_SLOTS = (5, 10)

#: Gene targets per MoA for the platemap: those of the real compounds the invented ones resemble.
TARGETS = {
    "tubulin_destabilizer": "TUBB|TUBA1A",
    "dna_damage": "TOP2A|TOP2B",
    "mito_uncoupler": "UCP1",
    "actin_disruptor": "ACTB",
}


@dataclass(frozen=True)
class Compound:
    """A perturbation: its MoA group, potency (0 = no effect, 1 = full) and control role.

    ``control`` follows JUMP-Target's ``control_type``: ``negcon``,
    ``poscon_cp`` or empty for a treatment.
    """

    name: str
    moa: str
    potency: float
    control: str = ""

    @property
    def pert_type(self) -> str:
        """JUMP-Target's ``pert_type``: ``control`` for negative and positive controls."""
        return "control" if self.control else "trt"

    @property
    def broad_sample(self) -> str:
        """A stable, invented Broad sample id; empty for DMSO, as in JUMP-Target platemaps."""
        if self.control == "negcon":
            return ""
        number = int(hashlib.sha256(self.name.encode()).hexdigest(), 16) % 10**8
        return f"BRD-K{number:08d}-001-01-1"

    @property
    def target(self) -> str:
        """The MoA's gene targets, ``|``-separated as in JUMP's ``target_list``; empty for DMSO."""
        return TARGETS.get(self.moa, "")

    def phenotype(self, response: Phenotype = NO_RESPONSE) -> Phenotype:
        """The MoA's phenotype and the batch's stress ``response``, both scaled towards
        neutral by potency, so DMSO never shows either."""
        moa = _scaled(PHENOTYPES[self.moa], self.potency)
        stress = _scaled(response, self.potency)
        return dataclasses.replace(moa, **{k: v * getattr(stress, k) for k, v in phenotype_effects(moa).items()})


def phenotype_effects(phenotype: Phenotype) -> dict[str, float]:
    """The effect multipliers of a phenotype (every float field)."""
    values = {f.name: getattr(phenotype, f.name) for f in dataclasses.fields(phenotype)}
    return {name: value for name, value in values.items() if isinstance(value, float)}


def _scaled(phenotype: Phenotype, amount: float) -> Phenotype:
    """``phenotype`` with every effect moved from neutral (1.0) by ``amount`` of its full size."""
    moved = {k: 1.0 + amount * (v - 1.0) for k, v in phenotype_effects(phenotype).items()}
    return dataclasses.replace(phenotype, **moved)


@dataclass(frozen=True)
class DemoBatch:
    """What a batch does to its plates: its imaging (``BatchEffect``) and its cells' stress response."""

    imaging: BatchEffect
    response: Phenotype


@dataclass(frozen=True)
class DemoPlate:
    """One plate: where it sits in the gallery, how it was imaged and seeded.

    ``effect`` is the batch's imaging effect with this plate's own staining
    and exposure differences folded into its per-channel gain; ``density``
    is the plate's relative seeding density.
    """

    source: str
    batch: str
    plate: str
    microscope: str  # "phenix" or "cv8000": the two file-naming schemes
    effect: BatchEffect
    response: Phenotype = NO_RESPONSE
    density: float = 1.0
    first_site: int = 1
    illum: bool = True


@dataclass(frozen=True)
class WellCondition:
    """How one well of one plate differs from the plate average: seeding density and staining."""

    density: float
    stain: float


@dataclass(frozen=True)
class DemoLayout:
    """The whole demo gallery."""

    plates: tuple[DemoPlate, ...]
    wells: dict[str, Compound]
    sites: int = 2
    size: int = 1080
    dataset: str = DATASET


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the sha256 of the parts' names: the same on every machine, and
    distinct for distinct names (``hash()`` is salted per process; a prefix of the
    bytes would give every plate of a naming scheme the same seed)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def edge_distance(well: str) -> int:
    """Rings of wells between ``well`` and the plate's edge (0 = an outermost well)."""
    row, column = ord(well[0]) - ord("A"), int(well[1:]) - 1
    return min(row, PLATE_ROWS - 1 - row, column, PLATE_COLUMNS - 1 - column)


def well_condition(plate: DemoPlate, well: str) -> WellCondition:
    """The plate's seeding × the well's own draw × the edge effect at the well's position."""
    rng = np.random.default_rng(stable_seed(plate.plate, well, "well"))
    edge = 0.5 ** edge_distance(well)
    density = plate.density * rng.lognormal(0.0, WELL_DENSITY_SD) * (1.0 - EDGE_CELL_LOSS * edge)
    stain = rng.lognormal(0.0, WELL_STAIN_SD) * (1.0 - EDGE_STAIN_LOSS * edge)
    return WellCondition(float(density), float(stain))


def well_cells(plate: DemoPlate, well: str, compound: Compound) -> tuple[Phenotype, float]:
    """What ``well`` of ``plate`` shows: the compound's phenotype with the batch's stress
    response, seeded at the well's density, and the well's staining factor."""
    condition = well_condition(plate, well)
    phenotype = compound.phenotype(plate.response)
    return dataclasses.replace(phenotype, cell_density=phenotype.cell_density * condition.density), condition.stain


def compounds() -> list[Compound]:
    """DMSO, two compounds per MoA group (full and partial potency) and a positive control.

    The positive control is a stronger DNA-damaging agent, as JUMP-Target's
    ``poscon_cp`` compounds are chosen for strong phenotypes.
    """
    result = [Compound(NEGATIVE_CONTROL, NEGATIVE_CONTROL, 0.0, "negcon")]
    for moa in sorted(m for m in PHENOTYPES if m != NEGATIVE_CONTROL):
        name = PHENOTYPES[moa].compound
        result += [Compound(name, moa, 1.0), Compound(f"{name}-analog", moa, 0.7)]
    return [*result, Compound("synthorubicin", "dna_damage", 1.2, "poscon_cp")]


def default_wells(columns: int = 4) -> dict[str, Compound]:
    """A block of wells from A01: treatments once each, controls on the block's diagonals.

    The controls are then edge wells and interior ones alike, as on JUMP
    plates, so their spread includes the edge effect.
    """
    dmso, *treated, positive = compounds()
    controls = {slot: dmso for slot in NEGCON_SLOTS} | {slot: positive for slot in POSCON_SLOTS}
    remaining = iter(treated)
    contents = [controls.get(i) or next(remaining) for i in range(len(treated) + len(controls))]
    return {f"{chr(ord('A') + i // columns)}{i % columns + 1:02d}": c for i, c in enumerate(contents)}


#: Per batch: imaging (gain, vignetting, offset are linear and removed by per-plate
#: normalization; gamma and blur are not) and the cells' stress response.
BATCHES = {
    "2025_01_13_Batch1": DemoBatch(BatchEffect(gain=1.0, vignetting=0.15, offset=0.0), SPREADING_RESPONSE),
    "2025_02_10_Batch2": DemoBatch(
        BatchEffect(gain=1.35, vignetting=0.35, offset=120.0, gamma=0.8, blur=1.0), METABOLIC_RESPONSE
    ),
    "2025_03_03_Batch3": DemoBatch(
        BatchEffect(gain=0.8, vignetting=0.25, offset=60.0, gamma=1.2, blur=0.6), CYTOTOXIC_RESPONSE
    ),
}


def demo_plate(source: str, batch: str, plate: str, microscope: str, **kwargs: object) -> DemoPlate:
    """A plate of ``batch`` with its own small seeding and per-channel staining differences."""
    rng = np.random.default_rng(stable_seed(plate, "plate"))
    imaging = BATCHES[batch].imaging
    gain = {ch: round(imaging.gain_for(ch) * float(rng.lognormal(0.0, PLATE_GAIN_SD)), 4) for ch in CHANNELS}
    density = round(float(rng.lognormal(0.0, PLATE_DENSITY_SD)), 4)
    effect = dataclasses.replace(imaging, gain=gain)
    return DemoPlate(source, batch, plate, microscope, effect, BATCHES[batch].response, density, **kwargs)


def default_layout(size: int = 1080, sites: int = 2) -> DemoLayout:
    """Two Phenix batches of two plates, and one CV8000 plate of another source."""
    b1, b2, b3 = BATCHES
    plates = (
        demo_plate("source_1", b1, "DEMO101", "phenix"),
        demo_plate("source_1", b1, "DEMO102", "phenix"),
        demo_plate("source_1", b2, "DEMO201", "phenix"),
        demo_plate("source_1", b2, "DEMO202", "phenix"),
        demo_plate("source_2", b3, "DEMO301", "cv8000", first_site=0, illum=False),
    )
    return DemoLayout(plates=plates, wells=default_wells(), sites=sites, size=size)


def small_layout(size: int = 384) -> DemoLayout:
    """A quick gallery for tests: a Phenix plate, a CV8000 plate, then a second plate of the first batch.

    Two batches (one per microscope, with different stress responses,
    gamma and blur), both site-numbering conventions, plates with and
    without illumination functions; all 16 wells, so treated wells
    replicate each MoA across batches and the controls have a spread. The
    third plate is last so that a test can grow a run from two plates to three.
    """
    full = default_layout(size=size, sites=2)
    return dataclasses.replace(full, plates=(full.plates[0], full.plates[4], full.plates[1]))


def effects(layout: DemoLayout) -> list[dict[str, object]]:
    """Each planted technical effect: where it acts, its size, and whether per-plate
    normalization against DMSO removes it. Sizes come from the constants the
    gallery is built with, so the documentation cannot drift from the data."""
    batches = {p.batch: BATCHES[p.batch] for p in layout.plates}
    per_batch = "; ".join(
        f"{name}: gain {b.imaging.gain}, offset {b.imaging.offset} ADU, vignetting {b.imaging.vignetting}, "
        f"gamma {b.imaging.gamma}, blur {b.imaging.blur} px, stress response {b.response.name}"
        for name, b in batches.items()
    )
    return [
        {"effect": "site sampling", "level": "site", "removed_by_normalization": False,
         "size": "every site draws its own cells (Poisson count, shapes, brightness, textures, noise)"},
        {"effect": "well seeding and staining", "level": "well", "removed_by_normalization": False,
         "size": f"cell density x lognormal(sd {WELL_DENSITY_SD}), staining x lognormal(sd {WELL_STAIN_SD})"},
        {"effect": "plate edge", "level": "well position", "removed_by_normalization": False,
         "size": f"outermost ring: {EDGE_CELL_LOSS:.0%} fewer cells, {EDGE_STAIN_LOSS:.0%} dimmer staining; "
                 "half that one ring further in, a quarter two rings in, and so on"},
        {"effect": "plate to plate within a batch", "level": "plate", "removed_by_normalization": True,
         "size": f"seeding x lognormal(sd {PLATE_DENSITY_SD}), per-channel gain x lognormal(sd {PLATE_GAIN_SD})"},
        {"effect": "batch gain, offset, vignetting", "level": "batch", "removed_by_normalization": True,
         "size": "linear per channel (vignetting divided out where illumination functions exist); " + per_batch},
        {"effect": "batch intensity response (gamma)", "level": "batch", "removed_by_normalization": False,
         "size": f"signal -> {RESPONSE_REFERENCE_ADU:.0f} * (signal / {RESPONSE_REFERENCE_ADU:.0f}) ** gamma, "
                 "gamma per batch as above"},
        {"effect": "batch defocus (blur)", "level": "batch", "removed_by_normalization": False,
         "size": "Gaussian blur, sd in px per batch as above"},
        {"effect": "batch x treatment interaction (stress response)", "level": "batch",
         "removed_by_normalization": False,
         "size": "every compound adds its batch's stress response, scaled by its potency, to its MoA phenotype: "
                 + "; ".join(f"{name}: {_describe(b.response)}" for name, b in batches.items())},
    ]


def _describe(phenotype: Phenotype) -> str:
    """The multipliers of a phenotype that differ from neutral, e.g. ``cell_scale x0.85``."""
    changed = [f"{k} x{v}" for k, v in phenotype_effects(phenotype).items() if v != 1.0]
    return f"{phenotype.name} ({', '.join(changed) or 'no change'})"
