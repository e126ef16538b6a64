"""Across plates: every plate's profiles in one table, then feature selection.

``collect`` concatenates the plates' ``profiles/{features}.parquet`` into
``collection/{features}/profiles.parquet`` (plates whose feature columns
disagree are an error, or keep the shared columns when configured);
``select`` writes ``selected.parquet`` with pycytominer's feature selection
operations, or with the features of a locked earlier run.
"""
