"""``python -m blocksum ARGS``: the ``coordinator`` command line itself (same arguments,
output and exit code)."""

import os
import sys

from ._binaries import coordinator_path


def main() -> None:
    """Replaces this process with ``coordinator ARGS``."""
    try:
        path = coordinator_path()
    except FileNotFoundError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [path, *sys.argv[1:]])


if __name__ == "__main__":
    main()
