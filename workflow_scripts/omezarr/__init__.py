"""Fetched TIFF fields to NGFF HCS plates (OME-Zarr), and back.

``writer`` builds a plate from the fetch stage's ``load_data.parquet`` and
local cache; ``reader`` is the small interface every later stage uses to get
fields, channel labels, pixel size and per-field conversion status, so no
stage depends on the on-disk layout or the NGFF version.
"""
