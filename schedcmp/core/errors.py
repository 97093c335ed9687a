"""Domain errors. Raised deep; the CLI turns them into one line and an exit code once, in cli.main, and the
Python API lets them through. Each carries the message the CLI prints and the CLI's exit code."""

# Exit codes, one table for every command (docs/outputs.md repeats it).
EXIT_OK = 0
EXIT_RUN_FAILED = 1  # run: a run failed; merge: cells were missing
EXIT_DRIFT = 1  # check: drift, or a missing baseline file
EXIT_USAGE = 2  # bad flags, names, values or files: nothing was run
EXIT_GENERATION_ERROR = 3  # check: a case could not be generated
EXIT_NONDETERMINISTIC = 4  # check --preflight: a case differs from itself
EXIT_NO_CASES = 5  # check: the baseline folder holds no cases
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it


class SchedcmpError(Exception):
    """An error the user can act on; its message is the whole one-line explanation."""

    exit_code = EXIT_USAGE


class UsageError(SchedcmpError, ValueError):
    """Bad flags, names or values: nothing was run."""


class ModelError(SchedcmpError):
    """The model cannot be found or loaded: nothing was run."""


class OutputError(SchedcmpError, OSError):
    """The output folder (or a results folder to read) cannot be used: nothing was run."""


class Terminated(BaseException):
    """SIGTERM (a CI timeout, `timeout`, a cluster's preemption), handled as Ctrl-C is: what finished is written.

    Not a KeyboardInterrupt: typer turns one of those into a silent exit 130, and this must reach cli.main."""
