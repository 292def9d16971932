"""One module per scenario; each takes a ``Run`` and appends its figures to ``run.results``."""
