"""Per-plate profiles: a plate's well profiles annotated and normalized.

``annotate`` joins the plate's platemap and the configured extra tables to
its wells and says which wells are treatments and which are negative or
positive controls (``controls``); ``normalize`` scales every feature against
the plate's negative controls, after the optional well-position and
cell-count adjustments of JUMP's recipe. ``columns`` keeps metadata names
unambiguous. The stage writes ``profiles/{features}.parquet``.
"""
