"""Errors the CLI prints as one line with a non-zero exit: user errors (2), failed quality gates (1)."""


class LakehouseError(Exception):
    """A problem the user can fix (bad config, bad argument, missing input); never a bug."""

    exit_code = 2


class QualityGateFailed(LakehouseError):
    """Data that breaks its quality suite: the pipeline stops short of publishing it."""

    exit_code = 1
