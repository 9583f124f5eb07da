"""The result of a run: the coordinator's JSON report (``--report``) as typed attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

Window = Tuple[int, int, int, int]


@dataclass(frozen=True)
class QuarantinedWindow:
    """A window whose output pixels are nodata: ``x, y, w, h`` in input and output pixels."""

    id: int
    window: Window
    out_window: Window
    cause: str
    """Its last failure: GDAL's text, the signal, ..."""


@dataclass(frozen=True)
class RunResult:
    """A finished run, read from its JSON report.

    The attributes cover what a pipeline usually checks; ``raw`` is the whole report (the
    schema is the coordinator's ``report.rs``; a batch's report has ``inputs``).
    """

    exit_code: int
    status: str
    """``ok``, ``completed_with_quarantined_chunks`` or ``failed``."""
    output: str
    """The output path (a batch: its output directory)."""
    chunks: int
    """Chunks of the plan."""
    done: int
    """Chunks computed (by workers and in process)."""
    done_in_process: int
    quarantined_windows: List[QuarantinedWindow]
    restarts: int
    """Worker restarts after a death (not the deliberate ones)."""
    timeouts: int
    deaths_by_cause: Dict[str, int]
    wall_time: float
    """Seconds, the run's wall time."""
    workers_spawned: int
    raw: Dict[str, Any] = field(repr=False)
    report_path: Optional[str] = None
    """Where the report was written, when the caller asked for one."""
    kept: bool = False
    """``resume=True`` found the output complete, committed by a run of the same input and
    options: it was left as it is, nothing was computed, and no report was written (the
    counts are then 0 and ``raw`` holds only what is known)."""

    @property
    def ok(self) -> bool:
        """Exit 0: every chunk computed, the output complete."""
        return self.exit_code == 0

    @property
    def inputs(self) -> List[Dict[str, Any]]:
        """A batch's per-input sections (empty for a single run)."""
        return list(self.raw.get("inputs", []))

    @classmethod
    def kept_output(cls, output: str) -> "RunResult":
        """The result of a resume over an output already complete (see :attr:`kept`)."""
        raw: Dict[str, Any] = {"status": "ok", "exit_code": 0, "output": output, "kept": True}
        return cls(
            exit_code=0,
            status="ok",
            output=output,
            chunks=0,
            done=0,
            done_in_process=0,
            quarantined_windows=[],
            restarts=0,
            timeouts=0,
            deaths_by_cause={},
            wall_time=0.0,
            workers_spawned=0,
            raw=raw,
            kept=True,
        )

    @classmethod
    def from_report(cls, report: Dict[str, Any], path: Optional[str] = None) -> "RunResult":
        """Reads a report (a single run's or a batch's) as written by ``--report``."""
        totals = report.get("totals") or {}
        windows = [
            QuarantinedWindow(
                id=int(w["id"]),
                window=_window(w["window"]),
                out_window=_window(w["out_window"]),
                cause=str(w.get("cause", "")),
            )
            for w in totals.get("quarantined_windows", [])
        ]
        return cls(
            exit_code=int(report["exit_code"]),
            status=str(report["status"]),
            output=str(report.get("output", report.get("out_dir", ""))),
            chunks=int(totals.get("chunks", 0)),
            done=int(totals.get("done", 0)) + int(totals.get("done_in_process", 0)),
            done_in_process=int(totals.get("done_in_process", 0)),
            quarantined_windows=windows,
            restarts=int(totals.get("restarts", 0)),
            timeouts=int(totals.get("timeouts", 0)),
            deaths_by_cause={str(k): int(v) for k, v in totals.get("deaths_by_cause", {}).items()},
            wall_time=int(totals.get("wall_ms", 0)) / 1000.0,
            workers_spawned=int(totals.get("workers_spawned", 0)),
            raw=report,
            report_path=path,
        )


def _window(w: Any) -> Window:
    x, y, width, height = (int(v) for v in w)
    return (x, y, width, height)
