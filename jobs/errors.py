"""The one error type for user errors: the CLI prints it as a single line and exits non-zero."""


class LakehouseError(Exception):
    """A problem the user can fix (bad config, bad argument, missing input); never a bug."""
