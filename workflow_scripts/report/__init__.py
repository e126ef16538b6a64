"""The run report: one self-contained HTML file a person can open offline.

It gathers what the stages wrote (QC, profiles, corrected tables, KPIs, the
selected method, drift) into ``{results_dir}/report/index.html`` with every
image embedded as a ``data:`` URI, so the file can be mailed or copied to a
USB stick and still show everything, without reaching any network address.
"""
