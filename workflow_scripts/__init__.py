"""Cell Painting Gallery plates to OME-Zarr, embeddings and corrected profiles.

Each submodule holds the logic of one workflow stage as plain functions; the
Snakemake rules in ``rules/`` only choose paths and call them.
"""

__version__ = "0.1.0"
