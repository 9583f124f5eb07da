"""on_event sees the run's events in order while it runs; Ctrl-C from Python stops the run
cleanly (exit 130, no process left, the journal kept for resume), and so does Python's death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import blocksum


def test_on_event_sees_every_chunk_in_order_while_the_run_goes(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    seen: List[Dict[str, Any]] = []
    during: List[bool] = []

    def on_event(e: Dict[str, Any]) -> None:
        if e["event"] in ("plan", "chunk_done"):
            # The output is committed at the end: these arrive while the run goes.
            during.append(not out.exists())
        seen.append(e)

    r = blocksum.resample(demo, out, 8, workers=2, on_event=on_event)
    names = [e["event"] for e in seen]
    assert names[0] == "plan" and names[-1] == "run_end", names
    assert all(during) and len(during) == 1 + r.chunks
    assert seen[0]["chunks"] == r.chunks and seen[-1]["exit_code"] == 0
    assert all(e["v"] == 1 for e in seen)
    for task in range(r.chunks):
        mine = [e for e in seen if e.get("task") == task]
        order = [e["event"] for e in mine]
        assert order.index("chunk_dispatched") < order.index("chunk_done") < order.index(
            "chunk_written"), (task, order)
        t = [e["t_ms"] for e in mine]
        assert t == sorted(t), (task, mine)
    written = sorted(e["task"] for e in seen if e["event"] == "chunk_written")
    assert written == list(range(r.chunks))
    assert names.index("commit") < names.index("run_end")


def test_an_exception_in_on_event_stops_the_run(demo: Path, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def on_event(e: Dict[str, Any]) -> None:
        if e["event"] == "chunk_dispatched":
            raise Stop()

    try:
        blocksum.resample(demo, tmp_path / "o.tif", 8, workers=2, on_event=on_event,
                          inject_fault="slow:*")
    except Stop:
        pass
    else:
        raise AssertionError("the callback's exception was swallowed")
    assert not (tmp_path / "o.tif").exists()
    assert_no_process(str(demo))


SCRIPT = textwrap.dedent(
    """
    import sys, blocksum
    src, dst = sys.argv[1], sys.argv[2]
    written = []
    def on_event(e):
        if e["event"] == "chunk_written":
            written.append(e["task"])
            if len(written) == 2:
                print("running", flush=True)
    try:
        # Chunk 3 sleeps 10 s in its worker: the interrupt lands while it runs.
        blocksum.resample(src, dst, 8, workers=2, on_event=on_event, inject_fault="slow:3")
    except blocksum.Interrupted as e:
        print("interrupted", e.exit_code, isinstance(e, blocksum.BlocksumError), flush=True)
        sys.exit(0)
    print("not interrupted", flush=True)
    sys.exit(1)
    """
)


def test_ctrl_c_in_python_interrupts_the_run(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    p = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(demo), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "running"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)  # what Ctrl-C at a terminal sends Python
    rest, err = p.communicate(timeout=120)
    assert p.returncode == 0, (rest, err)
    assert rest.split() == ["interrupted", "130", "True"], (rest, err)
    # Each chunk sleeps 10 s: a clean stop does not wait for them.
    assert time.monotonic() - t0 < 9
    assert not out.exists()
    left = sorted(f.name for f in tmp_path.iterdir())
    assert left == ["out.tif.journal"], left
    assert_no_process(str(demo))
    # The journal holds the chunks written before the interrupt: resume computes the rest.
    r = blocksum.resample(demo, out, 8, workers=2, resume=True)
    assert r.ok and r.raw["journal"]["resumed_chunks"] >= 2, r.raw["journal"]
    assert not r.kept
    # A retry after that (a requeued job): the output is complete, nothing is done.
    before = out.stat().st_mtime_ns
    again = blocksum.resample(demo, out, 8, workers=2, resume=True)
    assert again.ok and again.kept and again.done == 0, again
    assert out.stat().st_mtime_ns == before


KILLED = textwrap.dedent(
    """
    import sys, blocksum
    src, dst = sys.argv[1], sys.argv[2]
    # Every chunk sleeps 10 s in its worker, none twice: the run is still going when this
    # process is killed.
    blocksum.resample(src, dst, 8, workers=2, inject_fault="slow:*", speculation="off")
    """
)


def test_a_killed_python_takes_its_run_with_it(demo: Path, tmp_path: Path) -> None:
    """SIGKILL leaves Python no say: the coordinator learns of it from the kernel (its
    parent-death signal), stops as on SIGTERM, and its workers go with it."""
    out_dir, scratch = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    scratch.mkdir()
    out = out_dir / "out.tif"
    # The package's temporary report goes here, not into /tmp: nobody removes it after a KILL.
    env = {**os.environ, "TMPDIR": str(scratch)}
    p = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(demo), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        # Going: a worker of this run is up (its BLOCKSUM_JOB, or the coordinator's command
        # line it was forked with, names the output).
        while not [c for c, comm in processes(str(out)) if comm == "worker"]:
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "no worker of the run after 60 s"
            time.sleep(0.05)
        assert (out_dir / ".out.tif.lock").exists(), sorted(os.listdir(out_dir))
    finally:
        p.kill()
        p.communicate()
    assert p.returncode == -signal.SIGKILL
    # Each chunk takes 10 s: a run that went on would write the output after that.
    assert_no_process(str(out), within=30)
    assert not out.exists()
    left = sorted(f.name for f in out_dir.iterdir())
    assert left in ([], ["out.tif.journal"]), left


def processes(needle: str) -> List[Tuple[bytes, str]]:
    """The command line and name of every live process but this one whose command line or
    environment (a worker's BLOCKSUM_JOB) has ``needle``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if needle.encode() in cmd or needle.encode() in env:
            found.append((cmd, comm))
    return found


def assert_no_process(needle: str, within: float = 5) -> None:
    """Within ``within`` seconds, no process (coordinator or worker) whose command line or
    BLOCKSUM_JOB names ``needle`` (the input, or the output)."""
    deadline = time.monotonic() + within
    while True:
        found = processes(needle)
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not found, found
