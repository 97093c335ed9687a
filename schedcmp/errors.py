"""Domain errors. Raised deep, turned into one line and an exit code once, in cli.main."""

# Exit codes, one table for every command (README.md repeats it).
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class SchedcmpError(Exception):
    """An error the user can act on; its message is the whole one-line explanation."""

    exit_code = EXIT_USAGE


class UsageError(SchedcmpError):
    """Bad flags, names or values: nothing was run."""


class ModelError(SchedcmpError):
    """The model cannot be found or loaded: nothing was run."""


class OutputError(SchedcmpError):
    """The output folder cannot be used: nothing was run."""
