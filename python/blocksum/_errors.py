"""The exceptions: one class per documented exit code of the coordinator.

Every class derives from :class:`BlocksumError`, carries ``exit_code`` and the
coordinator's one-line message (its ``error: ...`` line, without the prefix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Type

if TYPE_CHECKING:
    from ._result import RunResult


class BlocksumError(Exception):
    """A run that did not end with exit 0.

    Attributes:
        exit_code: the coordinator's exit code (the README's table).
        message: its one-line error, without ``error:``.
        stderr: everything the coordinator wrote on stderr.
        result: the run's report as a :class:`~blocksum.RunResult`, when the run got far
            enough to write one (always for :class:`QuarantinedChunks`), else ``None``.
    """

    exit_code: int = -1

    def __init__(
        self,
        message: str,
        *,
        exit_code: Optional[int] = None,
        stderr: str = "",
        result: Optional["RunResult"] = None,
    ) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.message = message
        self.stderr = stderr
        self.result = result

    def __str__(self) -> str:
        return self.message


class InternalError(BlocksumError):
    """Exit 1: an internal error of the tool (a bug: please report it)."""

    exit_code = 1


class UsageError(BlocksumError):
    """Exit 2: a bad command line (unknown option, a value that does not parse, ...)."""

    exit_code = 2


class InputError(BlocksumError):
    """Exit 3: bad input (missing or non-raster input, unknown band, bad config file, ...)."""

    exit_code = 3


class OutputError(BlocksumError):
    """Exit 4: the output exists (without ``overwrite``), cannot be written, or is locked."""

    exit_code = 4


class QuarantinedChunks(BlocksumError):
    """Exit 5: the run completed, but some chunks were quarantined (their pixels are nodata).

    ``result`` holds the run's report; ``result.quarantined_windows`` names the windows.
    """

    exit_code = 5
    result: "RunResult"


class WorkersFailed(BlocksumError):
    """Exit 6: the worker pool could not be kept alive (workers do not start, breaker)."""

    exit_code = 6


class ResourceLimits(BlocksumError):
    """Exit 7: memory or file-descriptor limits cannot be met."""

    exit_code = 7


class BatchPartlyFailed(BlocksumError):
    """Exit 8: a batch where some inputs failed and the others were written complete."""

    exit_code = 8


class Interrupted(BlocksumError):
    """Exit 130: the run was interrupted (Ctrl-C, SIGTERM); its journal allows ``resume``."""

    exit_code = 130


EXCEPTIONS: Dict[int, Type[BlocksumError]] = {
    cls.exit_code: cls
    for cls in (
        InternalError,
        UsageError,
        InputError,
        OutputError,
        QuarantinedChunks,
        WorkersFailed,
        ResourceLimits,
        BatchPartlyFailed,
        Interrupted,
    )
}


def error_for(
    exit_code: int, message: str, stderr: str, result: Optional["RunResult"]
) -> BlocksumError:
    """The exception for ``exit_code`` (the base class for a code the README does not list,
    such as a coordinator killed by a signal: ``exit_code`` is then minus the signal)."""
    cls = EXCEPTIONS.get(exit_code)
    if cls is None:
        return BlocksumError(message, exit_code=exit_code, stderr=stderr, result=result)
    return cls(message, stderr=stderr, result=result)
