"""blocksum: block aggregation of huge rasters through a supervised worker pool, from Python.

Each function runs the ``coordinator`` binary that ``pip install`` put beside this package
(``BLOCKSUM_COORDINATOR`` overrides it), reads its JSON report into a :class:`RunResult`,
and turns a non-zero exit code into an exception, one class per documented code::

    import blocksum

    try:
        r = blocksum.resample("in.tif", "out.tif", 8, config="config.yml")
        print(r.done, "chunks in", r.wall_time, "s")
    except blocksum.QuarantinedChunks as e:
        print("nodata windows:", e.result.quarantined_windows)

``python -m blocksum ...`` runs the command line itself.
"""

from ._api import map, merge, plan, resample
from ._binaries import coordinator_path
from ._errors import (
    BatchPartlyFailed,
    BlocksumError,
    InputError,
    InternalError,
    Interrupted,
    OutputError,
    QuarantinedChunks,
    ResourceLimits,
    UsageError,
    WorkersFailed,
)
from ._result import QuarantinedWindow, RunResult

__version__ = "0.1.0"

__all__ = [
    "BatchPartlyFailed",
    "BlocksumError",
    "InputError",
    "InternalError",
    "Interrupted",
    "OutputError",
    "QuarantinedChunks",
    "QuarantinedWindow",
    "ResourceLimits",
    "RunResult",
    "UsageError",
    "WorkersFailed",
    "coordinator_path",
    "map",
    "merge",
    "plan",
    "resample",
]
