"""CellProfiler single cells to well-level profiles, on CPU nodes.

The gallery stores CellProfiler output per plate in several shapes (a
single-cell SQLite backend, a backend CSV, per-site analysis CSVs, or
finished well profiles). The fetch stage finds and downloads the first one
present in the configured order (``workflow_scripts.fetch.backend``); here a
reader per shape streams its single cells well by well, leaving out the
fields QC excludes (``qc_exclusion``), ``aggregate`` reduces them with the
numbers of pycytominer's ``SingleCells.aggregate_profiles()``, and ``output``
writes ``cellprofiler/wells.parquet``.
"""
