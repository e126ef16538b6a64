"""From metrics to verdicts: which fields fail QC, and why.

Reasons, in the order they are reported (joined by '; '):
- the conversion's reason ('unreadable', 'missing file', 'shape mismatch',
  'dtype mismatch') when any channel's TIFF could not be read (the detail
  names the channels); nothing else is judged for such a field, whose
  failed channels are placeholder zeros;
- 'zero-filled': a channel with only zeros (the gallery has such files);
- 'constant': a channel with one value throughout, other than zero;
- 'out of focus': a focus-channel power log-log slope more than
  ``focus_tolerance`` below the plate's median (blur steepens the slope;
  the plate is the reference because slopes differ between microscopes);
- 'saturated': a channel with more than ``max_saturated_fraction`` of its
  pixels at or above ``saturation_level``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from workflow_scripts.qc.thresholds import QcThresholds


def flag_fields(table: pd.DataFrame, channels: Sequence[str], thresholds: QcThresholds) -> pd.DataFrame:
    """``table`` plus ``qc_pass``, ``qc_reason`` and ``qc_detail`` (which channels, how much)."""
    # NaN slopes (unreadable fields, constant planes) neither set the median nor get judged.
    focus_cutoff = table["focus_plls"].median() - thresholds.focus_tolerance
    verdicts = [_verdict(row, channels, thresholds, focus_cutoff) for row in table.to_dict("records")]
    return table.assign(
        qc_pass=[not verdict for verdict in verdicts],
        qc_reason=["; ".join(reason for reason, _ in verdict) for verdict in verdicts],
        qc_detail=["; ".join(f"{reason}: {detail}" for reason, detail in verdict) for verdict in verdicts],
    )


def _verdict(
    row: dict, channels: Sequence[str], thresholds: QcThresholds, focus_cutoff: float
) -> list[tuple[str, str]]:
    """(reason, detail) pairs of one field; empty when it passes."""
    if row["conversion_reason"]:
        return [(row["conversion_reason"], row["conversion_detail"])]
    verdict = []
    zero = [ch for ch in channels if row[f"{ch}_max"] == 0]
    if zero:
        verdict.append(("zero-filled", ", ".join(zero)))
    constant = [ch for ch in channels if row[f"{ch}_min"] == row[f"{ch}_max"] > 0]
    if constant:
        verdict.append(("constant", ", ".join(constant)))
    if row["focus_plls"] < focus_cutoff:
        verdict.append(
            ("out of focus", f"{thresholds.focus_channel} slope {row['focus_plls']:.2f} < {focus_cutoff:.2f}")
        )
    saturated = [
        f"{ch} {row[f'{ch}_saturated_fraction']:.1%}"
        for ch in channels
        if row[f"{ch}_saturated_fraction"] > thresholds.max_saturated_fraction
    ]
    if saturated:
        verdict.append(("saturated", ", ".join(saturated)))
    return verdict
