"""Daily reports from the archive: one store, one UTC day.

``figures`` computes every number from the archive's DuckDB views (``instore.archive``) into
plain pydantic models, ``render`` draws them (matplotlib, SVG inlined into one self-contained
HTML file; the same figures in a PDF through matplotlib's PdfPages) and ``daily`` writes the
files under ``<archive>/reports`` and runs the once-a-day loop ``instore up`` supervises.
Definitions: docs/analytics.md, "Daily reports".
"""
