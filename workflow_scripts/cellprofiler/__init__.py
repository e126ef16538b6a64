"""CellProfiler single cells to well-level profiles, on CPU nodes.

The gallery stores CellProfiler output per plate in several shapes (a
single-cell SQLite backend, a backend CSV, per-site analysis CSVs, or
finished well profiles). ``sources`` finds and downloads the first one present
in the configured order, a reader per shape streams single cells well by well,
``aggregate`` reduces them with the numbers of pycytominer's
``SingleCells.aggregate_profiles()``, and ``output`` writes
``cellprofiler/wells.parquet``.
"""
