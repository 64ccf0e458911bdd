"""Views of the spend: the figures of a period, charts (SVG, PNG) and the report page."""
