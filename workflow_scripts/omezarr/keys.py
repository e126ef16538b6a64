"""Names inside a plate that the writer, the reader and QC agree on.

Kept apart from ``writer`` so that reading a plate does not import the
writing machinery.
"""

PROVENANCE_KEY = "provenance"  # plate attribute: how the plate was made
SUMMARY_KEY = "field_summary"  # plate attribute: fields converted / failed by reason
STATUS_KEY = "conversion"  # well attribute: per-field status, written last (marks the well complete)
ILLUM_GROUP = "illum"  # plate child group: gallery illumination functions, one (y, x) array per channel
AXES = ("c", "y", "x")
