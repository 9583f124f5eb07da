"""Running the coordinator: its events read from a pipe while it runs, its stderr kept for the
error line, Ctrl-C forwarded as one SIGINT, our death its SIGTERM, and its exit code turned into
an exception."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, List, Optional, Sequence

from ._binaries import coordinator_path
from ._errors import BlocksumError, error_for

EventHandler = Callable[[Dict[str, Any]], Any]

log = logging.getLogger("blocksum")

# The coordinator stops (as on SIGTERM) when the process of this PID dies.
PARENT_PID = "BLOCKSUM_PARENT_PID"

# How long a stopping run may take after its SIGINT (workers get TERM, a grace, then KILL)
# before a second SIGINT, then SIGKILL.
STOP_WAIT_S = 30.0


@dataclass
class Finished:
    """A coordinator process that has exited."""

    exit_code: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The one-line error (``error: ...`` without the prefix), or what best stands for it."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        for line in reversed(lines):
            if line.startswith("error: "):
                return line[len("error: ") :]
        if self.exit_code < 0:
            return f"coordinator killed by signal {-self.exit_code}"
        return lines[-1] if lines else f"coordinator exited {self.exit_code}"


class _StderrReader(threading.Thread):
    """Keeps the coordinator's stderr and logs each line (logger ``blocksum``, INFO)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: List[str] = []

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            log.info("%s", line)

    def text(self) -> str:
        return "\n".join(self.lines)


def run(args: Sequence[str], on_event: Optional[EventHandler] = None) -> Finished:
    """Runs ``coordinator ARGS``; with ``on_event``, ARGS must write the event stream to
    stdout (``--events -``) and each line is given to it as a dict, in the calling thread, as
    it arrives. A ``KeyboardInterrupt`` (or an exception from ``on_event``) stops the run with
    one SIGINT, waits for it to end, and raises :class:`Interrupted` (or the exception)."""
    proc = subprocess.Popen(
        [coordinator_path(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Its own session: a terminal's Ctrl-C reaches Python only, which sends exactly one
        # SIGINT (a second one would make the coordinator kill its workers at once).
        start_new_session=True,
        # Nor does anything reach it when Python dies (SIGKILL, SIGTERM, a closed terminal):
        # it takes our death for a SIGTERM (exit 130, nothing written) instead. The kernel
        # sends that when the thread that started it ends: this one, which waits for it.
        env={**os.environ, PARENT_PID: str(os.getpid())},
    )
    assert proc.stdout is not None and proc.stderr is not None
    err = _StderrReader(proc.stderr)
    err.start()
    out: List[str] = []
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            if on_event is None:
                out.append(line)
            elif line.strip():
                on_event(json.loads(line))
        proc.wait()
    except BaseException as e:
        code = _stop(proc)
        err.join()
        if isinstance(e, KeyboardInterrupt) and code != 0:
            # Exit 130 as a rule: Interrupted (another code if the run failed meanwhile).
            stopped = Finished(code, "", err.text())
            raise error_for(code, stopped.error_line(), stopped.stderr, None) from None
        raise
    err.join()
    return Finished(proc.returncode, "".join(out), err.text())


def _stop(proc: "subprocess.Popen[bytes]") -> int:
    """Stops a running coordinator: SIGINT, its stdout drained so that it never blocks on a
    full pipe, then a second SIGINT and at last SIGKILL if it does not end. Returns its exit
    code (minus the signal that killed it)."""
    assert proc.stdout is not None
    drain = threading.Thread(target=_drain, args=(proc.stdout,), daemon=True)
    drain.start()
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            # A second Ctrl-C while it stops: go on to the next, harder signal.
            continue
    proc.wait()
    drain.join(timeout=STOP_WAIT_S)
    return proc.returncode


def _drain(stream: IO[bytes]) -> None:
    try:
        for _ in stream:
            pass
    except (OSError, ValueError):
        pass


def check(done: Finished, result: Any = None) -> None:
    """Raises the exception of ``done``'s exit code, if it is not 0."""
    if done.exit_code != 0:
        raise error_for(done.exit_code, done.error_line(), done.stderr, result)


def flags(options: Dict[str, Any]) -> List[str]:
    """Keyword options as the coordinator's flags: ``task_timeout="30s"`` is
    ``--task-timeout 30s``, ``True`` a bare flag, ``False``/``None`` nothing, a list or tuple
    the flag repeated, a dict ``KEY=VALUE`` pairs (``co={"COMPRESS": "ZSTD"}``)."""
    out: List[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, dict):
            for k, v in value.items():
                out += [flag, f"{k}={_text(v)}"]
        elif isinstance(value, (list, tuple)):
            for v in value:
                out += [flag, _text(v)]
        else:
            out += [flag, _text(value)]
    return out


def _text(v: Any) -> str:
    if isinstance(v, os.PathLike):
        # str for a bytes path too (fspath would hand the bytes on, typed Any).
        return os.fsdecode(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


__all__ = ["BlocksumError", "EventHandler", "Finished", "check", "flags", "run"]
