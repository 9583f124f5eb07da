"""Every exception class against a real case that produces its exit code (Interrupted, 130,
is in test_events.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Type

import pytest

import blocksum

Case = Callable[[Path, Path], object]

CASES: list = [
    # 2: a value that does not parse.
    (blocksum.UsageError, 2, lambda demo, d: blocksum.resample(demo, d / "o.tif", 8, agg="median"), "median"),
    # 3: an input that does not exist.
    (blocksum.InputError, 3, lambda demo, d: blocksum.resample(d / "missing.tif", d / "o.tif", 8), "missing.tif"),
    # 4: the output exists and overwrite is not given.
    (blocksum.OutputError, 4, lambda demo, d: blocksum.resample(demo, d / "exists.tif", 8), "exists"),
    # 5: a chunk that segfaults its worker on every attempt is quarantined.
    (blocksum.QuarantinedChunks, 5, lambda demo, d: blocksum.resample(
        demo, d / "o.tif", 8, workers=2, inject_fault="segv:1"), "quarantined"),
    # 6: a "worker" that exits at once never says hello: the restart breaker trips.
    (blocksum.WorkersFailed, 6, lambda demo, d: blocksum.resample(
        demo, d / "o.tif", 8, workers=1, worker_bin="/bin/true"), "workers cannot start"),
    # 7: more free memory asked for than the machine has.
    (blocksum.ResourceLimits, 7, lambda demo, d: blocksum.resample(
        demo, d / "o.tif", 8, workers=1, min_free_memory="1000TiB"), "min-free-memory"),
    # 8: a batch where one input is missing and the other is written.
    (blocksum.BatchPartlyFailed, 8, lambda demo, d: blocksum.resample(
        [demo, d / "missing.tif"], d / "outdir", 8, workers=1), "missing.tif"),
]


@pytest.mark.parametrize("cls,code,case,needle", CASES, ids=[c[0].__name__ for c in CASES])
def test_each_exit_code_raises_its_class(
    demo: Path, tmp_path: Path, cls: Type[blocksum.BlocksumError], code: int, case: Case,
    needle: str,
) -> None:
    (tmp_path / "exists.tif").write_bytes(b"not to be replaced")
    with pytest.raises(cls) as info:
        case(demo, tmp_path)
    e = info.value
    assert isinstance(e, blocksum.BlocksumError) and type(e) is cls
    assert e.exit_code == code == cls.exit_code
    assert e.message == str(e) and "\n" not in e.message and needle in e.message, e.message
    assert not e.message.startswith("error:")
    if code in (5, 8):
        # The run wrote its report: the exception carries it.
        assert e.result is not None and e.result.exit_code == code
    if code == 5:
        windows = e.result.quarantined_windows
        assert windows and all(w.cause for w in windows)
        assert e.result.deaths_by_cause and e.result.done + len(windows) >= e.result.chunks
    if code == 4:
        assert (tmp_path / "exists.tif").read_bytes() == b"not to be replaced"


def test_every_documented_code_has_a_class() -> None:
    classes = {c.exit_code: c for c in blocksum.BlocksumError.__subclasses__()}
    assert sorted(classes) == [1, 2, 3, 4, 5, 6, 7, 8, 130]
    assert classes[130] is blocksum.Interrupted and classes[1] is blocksum.InternalError
