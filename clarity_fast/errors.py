"""One exception hierarchy: the CLI turns any of these into one line on stderr and a non-zero exit."""


class ClarityError(Exception):
    """Base of every error a user can cause; its message is the whole explanation."""

    exit_code = 1


class InputError(ClarityError):
    """An input file, argument or annotation that cannot be used as given."""

    exit_code = 2


class ModelError(ClarityError):
    """A model file that cannot be loaded or does not fit the data."""

    exit_code = 3


class OutputError(ClarityError):
    """An output that cannot be written (missing folder, read-only, disk full)."""

    exit_code = 4


class ClusterError(ClarityError):
    """A Dask scheduler that cannot be parsed or reached: unlike an InputError, a later --resume can mend it, so a
    run's finished slabs are kept."""

    exit_code = 2
