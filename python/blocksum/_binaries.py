"""Where the ``coordinator`` binary is: installed by ``pip install`` into the environment's
scripts directory, beside ``worker`` (the coordinator finds the worker beside itself)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Iterator


def _candidates() -> Iterator[Path]:
    override = os.environ.get("BLOCKSUM_COORDINATOR")
    if override:
        yield Path(override)
        return
    yield Path(sysconfig.get_path("scripts")) / "coordinator"
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        yield Path(sysconfig.get_path("scripts", scheme=user_scheme)) / "coordinator"
    yield Path(sys.executable).parent / "coordinator"
    found = shutil.which("coordinator")
    if found:
        yield Path(found)


def coordinator_path() -> str:
    """The ``coordinator`` binary this package runs.

    ``BLOCKSUM_COORDINATOR`` overrides it (a development build, e.g.
    ``target/release/coordinator``); otherwise the one ``pip install`` put in this
    environment's scripts directory, then one on ``PATH``.

    Raises:
        FileNotFoundError: no coordinator binary is installed.
    """
    tried = []
    for p in _candidates():
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        tried.append(str(p))
    raise FileNotFoundError(
        "blocksum: no coordinator binary (looked at "
        + ", ".join(tried)
        + "); install the package with `pip install ./python` or set BLOCKSUM_COORDINATOR"
    )
