"""The functions: each runs the coordinator with the matching command and flags."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _process
from ._process import EventHandler, flags
from ._errors import BlocksumError
from ._result import RunResult

PathLike = Union[str, "os.PathLike[str]"]
Sources = Union[PathLike, Sequence[PathLike]]
# A target resolution (xres, yres) and extent (xmin, ymin, xmax, ymax), in the input's CRS
# units.
Resolution = Tuple[float, float]
Extent = Tuple[float, float, float, float]


def _global(workers: Union[int, str, None], config: Optional[PathLike]) -> List[str]:
    """The options that come before the command."""
    return flags({"workers": workers, "config": config})


def _numbers(name: str, values: Sequence[float], n: int) -> List[str]:
    """``values`` as ``n`` flag values, each a float written so that it parses back to the
    same double."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name}= takes a sequence of {n} numbers, not {values!r}")
    if len(values) != n:
        raise ValueError(f"{name}= takes {n} numbers, got {len(values)}: {values!r}")
    return [repr(float(v)) for v in values]


def _grid(
    factor: Optional[int],
    tr: Optional[Resolution],
    te: Optional[Extent],
    tap: bool,
    like: Optional[PathLike],
) -> List[str]:
    """The output grid's flags: ``--factor F``, or a target grid (``--tr XRES YRES`` with
    ``--te`` and ``--tap``, or ``--like REF``). Which combinations are allowed is the
    coordinator's to say (exit 2, :class:`UsageError`), as on the command line."""
    out = flags({"factor": factor})
    if tr is not None:
        out += ["--tr", *_numbers("tr", tr, 2)]
    if te is not None:
        out += ["--te", *_numbers("te", te, 4)]
    return out + flags({"tap": tap, "like": like})


def _stat(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _sources(src: Sources, dst: PathLike) -> List[str]:
    """One input and its output, or a batch: every input, written into directory ``dst``."""
    if isinstance(src, (str, os.PathLike)):
        return [os.fspath(src), os.fspath(dst)]
    return [*(os.fspath(s) for s in src), "--out-dir", os.fspath(dst)]


def _run_with_report(
    command: List[str],
    report: Optional[PathLike],
    on_event: Optional[EventHandler],
    options: Dict[str, Any],
    resuming: Optional[PathLike] = None,
) -> RunResult:
    """Runs a command that writes a report (``resample``, ``map``) and reads it back.
    ``resuming``: the output of a ``--resume`` run, which exits 0 without a report when it
    finds that output already complete."""
    if on_event is not None and options.get("events") is not None:
        raise ValueError("give either on_event or events=, not both: on_event reads the stream")
    scratch = None
    if report is None:
        scratch = tempfile.mkdtemp(prefix="blocksum-")
        report_path = os.path.join(scratch, "report.json")
    else:
        report_path = os.fspath(report)
    before = _stat(report_path)
    args = [*command, *flags(options), "--report", report_path]
    if on_event is not None:
        args += ["--events", "-"]
    try:
        done = _process.run(args, on_event)
        untouched = _stat(report_path) == before
        result = _read_report(report_path, before, None if scratch else report_path)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    _process.check(done, result)
    # Exit 0 with the report not written is a --resume that found the output complete (a
    # report written but unreadable is an error below).
    if result is None and done.exit_code == 0 and resuming is not None and untouched:
        return RunResult.kept_output(os.fspath(resuming))
    if result is None:
        raise BlocksumError(
            f"the coordinator exited 0 but wrote no report at {report_path}", exit_code=1
        )
    return result


def _read_report(
    path: str, before: Optional[Tuple[int, int]], keep: Optional[str]
) -> Optional[RunResult]:
    """The report this run wrote, or None (it failed before; an older file is not this run's)."""
    now = _stat(path)
    if now is None or now == before:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return RunResult.from_report(json.load(f), keep)
    except (OSError, ValueError, KeyError):
        return None


def resample(
    src: Sources,
    dst: PathLike,
    factor: Optional[int] = None,
    *,
    tr: Optional[Resolution] = None,
    te: Optional[Extent] = None,
    tap: bool = False,
    like: Optional[PathLike] = None,
    agg: str = "sum",
    workers: Union[int, str, None] = None,
    config: Optional[PathLike] = None,
    bands: Optional[Sequence[int]] = None,
    ot: Optional[str] = None,
    overwrite: bool = False,
    resume: bool = False,
    report: Optional[PathLike] = None,
    on_event: Optional[EventHandler] = None,
    **options: Any,
) -> RunResult:
    """Aggregates ``src`` into ``dst`` on an output grid given by exactly one of ``factor``
    (each output pixel is the ``agg`` of an F x F block of valid input pixels), ``tr`` or
    ``like`` (a target grid: each input pixel contributes to each cell with the fraction
    ``w`` of its area inside the cell; ``sum`` is the sum of ``w * v``, ``count`` the sum
    of ``w``, ``mean`` their ratio, ``min``/``max`` over the pixels with ``w > 0``; a cell
    with no valid pixel is nodata, or 0 for ``count``).

    Args:
        src: the input raster (anything GDAL opens), or a sequence of inputs: a batch on
            one pool, each written into the directory ``dst`` under its own file name.
        dst: the output GeoTIFF (a batch: the output directory).
        factor: the block size F (the same as ``tr`` of F input pixels on the input's
            origin).
        tr: the target resolution ``(xres, yres)`` in the input's CRS units (``--tr``);
            the grid covers the input's bounds from its top-left corner, extended right and
            down to whole cells.
        te: with ``tr``, the target extent ``(xmin, ymin, xmax, ymax)`` (``--te``),
            anchored at ``(xmin, ymax)`` and extended right and down to whole cells.
        tap: with ``tr``, align the extent's edges outward on multiples of the resolution
            (``--tap``).
        like: a raster whose grid (size, geotransform) is the target (``--like``); its CRS
            must be the input's (nothing is reprojected). Not with ``tr``, ``te``, ``tap``.
        agg: ``sum``, ``mean``, ``min``, ``max`` or ``count``.
        workers: worker processes, ``"auto"`` (the default), or 0 to run in process.
        config: a YAML or TOML config file, e.g. the application's ``config.yml``: its
            ``resampling.multiprocessing`` section is read.
        bands: 1-based bands to aggregate (default all).
        ot: output data type (``"Float32"``, ...; default one that cannot overflow: sum
            Float64, mean Float32 for a Float32 input else Float64, min/max the input's
            type, count UInt32 for ``factor`` and Float64 on a target grid).
        overwrite: replace ``dst`` if it exists.
        resume: continue an interrupted run from its journal; over an output that a run of
            the same input and options completed, do nothing (:attr:`RunResult.kept`).
        report: also keep the JSON report at this path (it is always read for the result).
        on_event: called with every event of the run (docs/events.md) as a dict, while the
            run goes, in the calling thread.
        **options: any other flag of ``coordinator resample``, underscores for dashes:
            ``task_timeout="30s"``, ``memory_limit_per_worker="512MiB"``,
            ``co={"COMPRESS": "ZSTD"}``, ``inject_fault=["crash:3:1"]``, ``of="COG"``.

    Returns:
        The run's report as a :class:`RunResult` (exit 0), or with ``resume`` over an output
        already complete, a result with ``kept`` set and no counts.

    Raises:
        UsageError: no grid, or more than one way to give it (``factor`` with ``tr`` or
            ``like``, ``like`` with ``tr``/``te``/``tap``, ``te``/``tap`` without ``tr``), a
            resolution that is not positive, a ``te`` that misses the input.
        InputError: ``like``'s grid in another CRS than the input's, or rotated.
        BlocksumError: a subclass per exit code (``QuarantinedChunks`` carries the result).
        Interrupted: Ctrl-C (the coordinator got SIGINT and stopped; its journal is kept).
        TypeError, ValueError: ``tr`` not two numbers, ``te`` not four.
    """
    cmd = [
        *_global(workers, config),
        "resample",
        *_sources(src, dst),
        *_grid(factor, tr, te, tap, like),
        *flags({"agg": agg, "band": bands, "ot": ot}),
        *flags({"overwrite": overwrite, "resume": resume}),
    ]
    single = isinstance(src, (str, os.PathLike))
    return _run_with_report(cmd, report, on_event, options, dst if resume and single else None)


def map(  # noqa: A001 - the coordinator's command is called map
    src: PathLike,
    dst: PathLike,
    kernel_lib: Optional[PathLike] = None,
    *,
    factor: int = 1,
    bands: Optional[Sequence[int]] = None,
    out_bands: int = 1,
    kernel_args: Optional[Mapping[str, Any]] = None,
    workers: Union[int, str, None] = None,
    config: Optional[PathLike] = None,
    overwrite: bool = False,
    resume: bool = False,
    report: Optional[PathLike] = None,
    on_event: Optional[EventHandler] = None,
    **options: Any,
) -> RunResult:
    """Runs your own kernel over ``src`` into ``dst`` (Float64, nodata NaN) with the same
    supervision as :func:`resample`.

    Args:
        src: the input raster.
        dst: the output GeoTIFF, ``ceil(W/factor) x ceil(H/factor)``.
        kernel_lib: a shared library exporting ``blocksum_kernel_v1``
            (``include/blocksum_kernel.h``), loaded by worker processes only; ``None`` with
            ``worker_bin=`` a Rust kernel's own worker binary.
        factor: block size F (chunks are multiples of it).
        bands: 1-based bands the kernel reads, in its order (default all).
        out_bands: output planes the kernel fills.
        kernel_args: ``--kernel-arg KEY=VALUE`` pairs, in order.
        workers, config, overwrite, resume, report, on_event, **options: as for
            :func:`resample` (``in_process_fallback=True``, ``max_attempts=1``, ...).

    Returns:
        The run's report as a :class:`RunResult`.

    Raises:
        BlocksumError: a subclass per exit code.
    """
    cmd = [
        *_global(workers, config),
        "map",
        os.fspath(src),
        os.fspath(dst),
        *flags({"kernel_lib": kernel_lib, "factor": factor, "band": bands}),
        *flags({"out_bands": out_bands, "kernel_arg": dict(kernel_args or {})}),
        *flags({"overwrite": overwrite, "resume": resume}),
    ]
    return _run_with_report(cmd, report, on_event, options, dst if resume else None)


def plan(
    src: PathLike,
    factor: Optional[int] = None,
    *,
    tr: Optional[Resolution] = None,
    te: Optional[Extent] = None,
    tap: bool = False,
    like: Optional[PathLike] = None,
    agg: str = "sum",
    workers: Union[int, str, None] = None,
    config: Optional[PathLike] = None,
    bands: Optional[Sequence[int]] = None,
    chunks: bool = False,
    **options: Any,
) -> Dict[str, Any]:
    """The chunk plan of a :func:`resample` with these options, nothing run.

    ``factor``, ``tr``, ``te``, ``tap`` and ``like`` give the output grid as for
    :func:`resample` (exactly one of ``factor``, ``tr``, ``like``).

    Returns:
        ``coordinator plan --json``: the plan's sizes (``chunks``, ``slots``, ``out_width``,
        ...), ``memory`` (the memory arithmetic) and ``decoder``; with ``chunks=True`` also
        ``chunk_list``, every chunk's window.

    Raises:
        UsageError: no grid, or more than one way to give it.
        BlocksumError: a subclass per exit code.
        TypeError, ValueError: ``tr`` not two numbers, ``te`` not four.
    """
    cmd = [
        *_global(workers, config),
        "plan",
        os.fspath(src),
        *_grid(factor, tr, te, tap, like),
        *flags({"agg": agg, "band": bands, "chunks": chunks}),
        *flags(options),
        "--json",
    ]
    done = _process.run(cmd)
    _process.check(done)
    result: Dict[str, Any] = json.loads(done.stdout)
    return result


def merge(
    dst: PathLike, *, vrt: bool = False, overwrite: bool = False, keep_shards: bool = False
) -> str:
    """Assembles ``dst`` from the journals its shards (``resample(..., shard="I/N")``) left
    in ``dst.shards/``.

    Returns:
        The output's path.

    Raises:
        InputError: a shard or a chunk is missing, or shards of different plans.
        BlocksumError: another failure, by its exit code.
    """
    cmd = [
        "merge",
        os.fspath(dst),
        *flags({"vrt": vrt, "overwrite": overwrite, "keep_shards": keep_shards}),
    ]
    _process.check(_process.run(cmd))
    return os.fspath(dst)
