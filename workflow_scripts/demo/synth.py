"""Synthetic Cell Painting fields with known biology and known batch effects.

The demo gallery needs plates whose truth is known: which wells carry which
mechanism of action (``Phenotype``) and which batch distorted the optics and
the camera (``BatchEffect``). Later stages are scored on recovering the one
and removing the other, so both must act the way they do in real data:
phenotypes change cells, batch effects change image formation.

Image formation is ordered as in a microscope: fluorophore signal (× the
well's staining), blurred by the batch's defocus, × illumination
(vignetting), through the batch's intensity response (a power law around a
reference level, identity for the calibrated microscope) × detector gain,
then the camera's baseline and additive offset, then shot noise (variance
proportional to the detected signal) and read noise, then clipping to
uint16, so saturation happens at 65535 where real cameras saturate, in a
small fraction of pixels. Gain and offset are linear, so per-plate
normalization against controls removes them; the response curve and the
blur are not, so how they change a treatment's profile relative to the
controls survives it.

Intensity constants are calibrated on the real source_4 field of
``../shared/fixtures/jump-pixels`` (site 0: cpg0016 source_4 /
2021_06_07_Batch5 / BR00123947 / G01 / site 1, a 384 px centre crop of a
1080² Phenix field, the geometry the demo copies). The file is read by the
calibration test only; nothing here needs it at run time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
from scipy import ndimage as ndi

from workflow_scripts.channels import CELL_PAINTING_CHANNELS
from workflow_scripts.demo.synth_cells import CellShape, draw_layout, paint_cells

CHANNELS = CELL_PAINTING_CHANNELS
Maps = Mapping[str, np.ndarray]
Amplitudes = Mapping[str, np.float32]

# --- Calibration (measured once on jump-pixels site 0, see module docstring) ---
# Real per-channel percentiles (p5 / p50 / p99 / p99.9) and saturated fraction:
#   AGP  1448 /  3738 / 15127 / 21642, 0
#   DNA   835 /   926 / 22604 / 32607, 0
#   ER    755 /  1763 / 27313 / 39297, 0
#   Mito 1688 /  2016 / 14886 / 22751, 0
#   RNA   705 /  1885 / 35112 / 54736, 8e-5 (12 pixels at 65535)
# Background noise (robust sd of second differences in the darkest decile):
# AGP 19, DNA 16, ER 14, Mito 23, RNA 13 ADU, i.e. variance ≈ 0.25 × (level −
# baseline): the shot-noise constant below.
CAMERA_BASELINE_ADU = 100.0
SHOT_NOISE_ADU_PER_ELECTRON = 0.25
READ_NOISE_ADU = 3.0
UINT16_MAX = 65535
#: Background fluorescence of the medium and plate, ADU above the baseline.
BACKGROUND_ADU = {"DNA": 750.0, "AGP": 1370.0, "RNA": 620.0, "ER": 670.0, "Mito": 1610.0}
#: Peak ADU of each structure in each channel for an average DMSO cell.
AMPLITUDE_ADU = {
    "DNA": {"nucleus": 16000.0, "thickness": 150.0},
    "RNA": {"nucleus": 15500.0, "nucleoli": 15500.0, "perinuclear": 7000.0, "thickness": 1800.0},
    "ER": {"perinuclear": 18000.0, "thickness": 1500.0, "rim": 4000.0},
    "Mito": {"perinuclear": 13000.0, "thickness": 1800.0},
    "AGP": {"thickness": 4200.0, "membrane": 4000.0, "fibres": 5000.0, "golgi": 11000.0},
}
#: Cell-to-cell brightness spread (sd of log intensity), which gives the real
#: long upper tail and lets the brightest cells saturate.
CELL_BRIGHTNESS_SPREAD = 0.3
#: Relative strength of the multiplicative textures at texture = 1.
CHROMATIN_TEXTURE = 0.3
CYTOPLASM_TEXTURE = 0.35
#: Depth of the nucleolar holes in the DNA stain.
NUCLEOLAR_DNA_EXCLUSION = 0.5
#: Amplitude of the slow background haze (out-of-focus light, uneven medium).
HAZE = 0.04
#: Signal level (ADU above the baseline) that a nonlinear intensity response
#: leaves unchanged: about the brightness of a cell's cytoplasm.
RESPONSE_REFERENCE_ADU = 10000.0


@dataclass(frozen=True)
class Phenotype:
    """A mechanism of action as the change it makes to cells (1.0 = no change)."""

    name: str
    compound: str
    nucleus_scale: float = 1.0
    dna_intensity: float = 1.0
    texture: float = 1.0
    cell_density: float = 1.0
    cell_scale: float = 1.0
    shape_irregularity: float = 1.0
    agp_fibres: float = 1.0
    mito_intensity: float = 1.0
    er_intensity: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self)[2:]:  # the effect multipliers after name and compound
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"phenotype {self.name!r}: {f.name} must be a finite number >= 0, got {value!r}")
        for name in ("nucleus_scale", "dna_intensity", "cell_density", "cell_scale"):
            if getattr(self, name) == 0:
                raise ValueError(f"phenotype {self.name!r}: {name} must be > 0")


#: The planted biology of the demo: DMSO and four mechanisms with effects
#: large enough to separate in well-level profiles. Compound names are
#: invented; they only resemble real tool compounds of each class.
PHENOTYPES: dict[str, Phenotype] = {
    p.name: p
    for p in (
        Phenotype("DMSO", "DMSO"),
        # mitotic arrest: large rounded nuclei, cells lost from the well
        Phenotype(
            "tubulin_destabilizer",
            "synthocodazole",
            nucleus_scale=1.35,
            texture=1.3,
            cell_density=0.6,
            cell_scale=0.9,
            shape_irregularity=0.5,
        ),
        # condensed, bright, coarsely textured small nuclei; some cells die
        Phenotype("dna_damage", "synthoposide", nucleus_scale=0.8, dna_intensity=1.6, texture=2.0, cell_density=0.8),
        # membrane potential lost: MitoTracker no longer accumulates; mild ER stress
        Phenotype("mito_uncoupler", "synthocarbonyl-X", mito_intensity=0.4, er_intensity=0.85),
        # stress fibres gone, cells retract and round up
        Phenotype("actin_disruptor", "synthochalasin", cell_scale=0.8, shape_irregularity=0.3, agp_fibres=0.15),
    )
}


@dataclass(frozen=True)
class BatchEffect:
    """How one batch's optics and camera distort every image it takes.

    ``gain`` and ``offset`` are one number for all channels or a mapping
    channel → number (channels left out are unchanged). ``vignetting`` is the
    fractional illumination loss at the field corners (0 = flat field).
    ``gamma`` is the exponent of the intensity response around
    ``RESPONSE_REFERENCE_ADU`` (1 = linear; stain lots and detectors differ
    in how they saturate), ``blur`` the sd in px of the defocus blur.
    """

    gain: float | Mapping[str, float] = field(default=1.0, hash=False)
    vignetting: float = 0.0
    offset: float | Mapping[str, float] = field(default=0.0, hash=False)
    gamma: float = 1.0
    blur: float = 0.0

    @classmethod
    def none(cls) -> BatchEffect:
        """The identity: images exactly as the calibrated microscope takes them."""
        return cls()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.vignetting) and 0.0 <= self.vignetting < 1.0):
            raise ValueError(f"batch vignetting must be in [0, 1), got {self.vignetting!r}")
        if not (math.isfinite(self.gamma) and 0.5 <= self.gamma <= 2.0):
            raise ValueError(f"batch gamma must be in [0.5, 2], got {self.gamma!r}")
        if not (math.isfinite(self.blur) and self.blur >= 0):
            raise ValueError(f"batch blur must be finite and >= 0 px, got {self.blur!r}")
        for channel in CHANNELS:
            gain, offset = self.gain_for(channel), self.offset_for(channel)
            if not (math.isfinite(gain) and gain > 0):
                raise ValueError(f"batch gain for {channel} must be finite and > 0, got {gain!r}")
            if not (math.isfinite(offset) and offset >= 0):
                raise ValueError(f"batch offset for {channel} must be finite and >= 0, got {offset!r}")

    def gain_for(self, channel: str) -> float:
        """Multiplicative detector gain of ``channel``."""
        return _per_channel(self.gain, channel, 1.0, "gain")

    def offset_for(self, channel: str) -> float:
        """Additive background counts of ``channel``."""
        return _per_channel(self.offset, channel, 0.0, "offset")


def _per_channel(value: float | Mapping[str, float], channel: str, neutral: float, what: str) -> float:
    """Resolve a global-or-per-channel batch parameter, rejecting unknown channels."""
    if not isinstance(value, Mapping):
        return float(value)
    unknown = set(value) - set(CHANNELS)
    if unknown:
        raise ValueError(f"batch {what} names unknown channels {sorted(unknown)}; known: {list(CHANNELS)}")
    return float(value.get(channel, neutral))


def _vignette(vignetting: float, size: int) -> np.ndarray:
    """Relative illumination: 1 at the centre, 1 - vignetting at the corners (quadratic fall-off)."""
    centred = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / (size / 2.0)
    radius2 = (centred[:, None] ** 2 + centred[None, :] ** 2) / 2.0
    return 1.0 - np.float32(vignetting) * radius2


def illumination_function(batch: BatchEffect, size: int = 1080) -> np.ndarray:
    """CellProfiler-style illumination correction function of ``batch``.

    Mean-normalised like CellProfiler's ``CorrectIlluminationCalculate``
    output, so ``raw / illum`` flattens the vignetting while keeping the
    field's overall intensity scale.
    """
    _check_size(size)
    profile = _vignette(batch.vignetting, size)
    return (profile / profile.mean(dtype=np.float64)).astype(np.float32)


def _check_size(size: int) -> None:
    """Reject fields too small to hold a cell, where every statistic would be background."""
    if size < 64:
        raise ValueError(f"field size must be >= 64 px (a cell is ~100 px across), got {size}")


def render_site(
    seed: int, phenotype: Phenotype, batch: BatchEffect, size: int = 1080, stain: float = 1.0
) -> dict[str, np.ndarray]:
    """Render one field: channel name → uint16 (size, size) image, deterministic in ``seed``.

    ``stain`` scales the cells' staining in every channel (the well's
    dispensing and the plate-edge effect); the medium's background is not stained.

    Independent random streams (layout, textures, noise) are spawned from the
    seed, so for one seed a batch effect never moves a cell and every
    phenotype sees the same textures and camera noise draw: differences
    between renders are the planted effects, not reshuffled randomness.
    """
    _check_size(size)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not (math.isfinite(stain) and stain > 0):
        raise ValueError(f"stain must be finite and > 0, got {stain!r}")
    layout_rng, texture_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    shape = CellShape(
        phenotype.nucleus_scale, phenotype.cell_density, phenotype.cell_scale, phenotype.shape_irregularity
    )
    layout = draw_layout(layout_rng, shape, size)
    label, structures = paint_cells(layout)
    textures = _textures(texture_rng, size)
    haze = _haze(texture_rng, size)
    per_cell = (len(CHANNELS), layout.count + 1)  # column 0: background, never lit
    brightness = texture_rng.lognormal(0.0, CELL_BRIGHTNESS_SPREAD, per_cell).astype(np.float32)
    illumination = _vignette(batch.vignetting, size)
    images = {}
    for c, channel in enumerate(CHANNELS):
        amplitudes = {name: np.float32(value) for name, value in AMPLITUDE_ADU[channel].items()}
        cells = _CHANNEL_SIGNALS[channel](amplitudes, structures, textures, phenotype) * brightness[c][label]
        signal = _defocus(cells * np.float32(stain) + np.float32(BACKGROUND_ADU[channel]) * haze, batch.blur)
        detected = intensity_response(signal * illumination, batch.gamma)
        images[channel] = camera_readout(detected, batch.gain_for(channel), batch.offset_for(channel), noise_rng)
    return images


def _defocus(signal: np.ndarray, blur: float) -> np.ndarray:
    """The optics' defocus: a Gaussian blur of ``blur`` px sd (none at 0)."""
    return ndi.gaussian_filter(signal, blur, mode="nearest") if blur > 0 else signal


def intensity_response(signal: np.ndarray, gamma: float) -> np.ndarray:
    """A power-law response around ``RESPONSE_REFERENCE_ADU``: compresses (gamma < 1) or
    expands (gamma > 1) bright signal relative to dim, which no per-feature shift
    and scale can undo."""
    if gamma == 1.0:
        return signal
    reference = np.float32(RESPONSE_REFERENCE_ADU)
    return reference * np.power(np.maximum(signal, 0) / reference, np.float32(gamma))


def _textures(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Unit-variance random textures at the scales of the stained structures.

    Two periodic fields are drawn (fine and coarse); further independent
    textures are the same fields rolled by a third and a half of the field,
    which decorrelates them far beyond their correlation length at the cost
    of a copy instead of a new filter pass.
    """
    fine, coarse = _random_field(rng, size, 1.5), _random_field(rng, size, 3.0)
    shifts = ((size // 3, size // 2), (size // 2, size // 3), (size // 5, 3 * size // 4))
    return {
        "chromatin": fine,
        "granules": np.roll(fine, shifts[0], axis=(0, 1)),
        "mito_breaks": np.roll(fine, shifts[1], axis=(0, 1)),
        "reticulum": coarse,
        "mito": np.roll(coarse, shifts[0], axis=(0, 1)),
        "fibre_breaks": np.roll(coarse, shifts[1], axis=(0, 1)),
    }


def _random_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Periodic white noise smoothed to correlation length ``sigma`` px, unit variance."""
    white = rng.standard_normal((size, size), dtype=np.float32)
    smooth = ndi.gaussian_filter(white, sigma, mode="wrap", truncate=3.0)
    return smooth / np.float32(smooth.std())


def _network(field_: np.ndarray, width: float) -> np.ndarray:
    """Thin curvilinear network along the zero crossings of a random field (peak 1)."""
    return np.exp(-((field_ / np.float32(width)) ** 2))


def _haze(rng: np.random.Generator, size: int) -> np.ndarray:
    """Slow multiplicative background variation around 1 (a few cosine waves per axis)."""
    position = np.arange(size, dtype=np.float32) / size
    waves = []
    for _ in range(2):
        frequency, phase = rng.uniform(0.3, 1.5, 3), rng.uniform(0, 2 * np.pi, 3)
        waves.append(np.cos(2 * np.pi * frequency[:, None] * position[None, :] + phase[:, None]).sum(axis=0) / 3)
    return (1.0 + HAZE * (waves[0][:, None] + waves[1][None, :])).astype(np.float32)


def _cytoplasm(amp: Amplitudes, s: Maps) -> np.ndarray:
    """ER, mitochondria and ribosomes crowd around the nucleus, where the cell is thickest."""
    return amp["perinuclear"] * s["perinuclear"] + amp["thickness"] * s["thickness"]


def _dna(amp: Amplitudes, s: Maps, t: Maps, phenotype: Phenotype) -> np.ndarray:
    """Hoechst: textured chromatin with nucleolar holes, a trace in the cytoplasm."""
    chromatin = np.clip(1.0 + CHROMATIN_TEXTURE * phenotype.texture * t["chromatin"], 0.0, None)
    nucleolar_holes = 1.0 - NUCLEOLAR_DNA_EXCLUSION * s["nucleoli"]
    nuclear = amp["nucleus"] * phenotype.dna_intensity * s["nucleus"] * chromatin * nucleolar_holes
    return nuclear + amp["thickness"] * s["thickness"]


def _rna(amp: Amplitudes, s: Maps, t: Maps, phenotype: Phenotype) -> np.ndarray:
    """SYTO 14: bright nucleoli, nucleoplasm, granular perinuclear cytoplasm."""
    granular = np.clip(1.0 + CYTOPLASM_TEXTURE * t["granules"], 0.0, None)
    return amp["nucleus"] * s["nucleus"] + amp["nucleoli"] * s["nucleoli"] + _cytoplasm(amp, s) * granular


def _er(amp: Amplitudes, s: Maps, t: Maps, phenotype: Phenotype) -> np.ndarray:
    """Concanavalin A: reticular perinuclear ER and the nuclear envelope."""
    reticulum = 0.55 + 0.45 * _network(t["reticulum"], 0.6)
    return phenotype.er_intensity * (_cytoplasm(amp, s) * reticulum + amp["rim"] * s["rim"])


def _mito(amp: Amplitudes, s: Maps, t: Maps, phenotype: Phenotype) -> np.ndarray:
    """MitoTracker: broken filaments and puncta, densest around the nucleus."""
    filaments = _network(t["mito"], 0.5) * (t["mito_breaks"] > -0.3)
    return phenotype.mito_intensity * _cytoplasm(amp, s) * (0.15 + 0.85 * filaments)


def _agp(amp: Amplitudes, s: Maps, t: Maps, phenotype: Phenotype) -> np.ndarray:
    """Phalloidin + WGA: cortex and membrane, stress fibres, Golgi beside the nucleus."""
    granular = np.clip(1.0 + CYTOPLASM_TEXTURE * t["granules"], 0.0, None)
    return (
        amp["thickness"] * s["thickness"] * granular
        + amp["membrane"] * s["membrane"]
        + amp["fibres"] * phenotype.agp_fibres * s["fibres"] * (t["fibre_breaks"] > -0.5)
        + amp["golgi"] * s["golgi"]
    )


_CHANNEL_SIGNALS = {"DNA": _dna, "AGP": _agp, "RNA": _rna, "ER": _er, "Mito": _mito}


def camera_readout(photons: np.ndarray, gain: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """Detect a photon-signal image (ADU at unit gain) as the calibrated camera does.

    Gain scales the detected signal, whose shot noise variance is
    proportional to it; the baseline and the batch offset are added
    noise-free apart from read noise; values are rounded and clipped to
    uint16, which is where saturation comes from.
    """
    detected = photons * np.float32(gain)
    noise = np.sqrt(np.float32(SHOT_NOISE_ADU_PER_ELECTRON) * detected + np.float32(READ_NOISE_ADU**2))
    noise *= rng.standard_normal(detected.shape, dtype=np.float32)
    detected += noise
    detected += np.float32(CAMERA_BASELINE_ADU + offset)
    np.clip(detected, 0, UINT16_MAX, out=detected)
    return np.rint(detected, out=detected).astype(np.uint16)
