

class RowLimits:
    """A second class in the handler-service module: enough for multi-model-server to refuse it."""

    max_rows = 1000
