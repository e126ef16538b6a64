"""Batch correction of the selected cross-plate profiles (the ``correct`` stage).

``collection/{features}/selected.parquet`` becomes
``collection/{features}/corrected/{method}.parquet`` for each method of
``correction.methods`` (``none``, ``sphering``, ``harmony``, ``combat``,
``control_std``, or chains such as ``sphering+harmony``), with the fitted
model and its lineage under ``collection/{features}/models/``. An earlier
run's models can be applied to new plates without refitting
(``correction.locked``). Entry point: ``python -m workflow_scripts.correct``.
"""
