"""Error types whose messages tell the user what to do next."""


class DetectorError(Exception):
    """Base class for errors reported to the user without a traceback."""

    exit_code = 1


class UsageError(DetectorError):
    """The command was called wrongly (bad flag value, missing file argument)."""

    exit_code = 2


class DataError(DetectorError):
    """The labelled data cannot be used as it is."""
