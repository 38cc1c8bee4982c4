"""Installed size and import time of the pycore this interpreter imports (README's figures).

Size: every file the installed distribution records (its RECORD: the package, the stubs,
pycore.libs/ with the bundled libgomp), in MB of 10**6 bytes. Import time: `import pycore`
in a fresh interpreter under `python -X importtime`, the cumulative time of the top-level
pycore import, which includes numpy (pycore imports it first); best of N runs, since a
busy machine only ever adds time.

Usage: python measure.py [--runs N] [--max-size-mb MB]   (exit 1 when the size is over MB)
"""

import argparse
import re
import subprocess
import sys
from importlib import metadata


def installed_bytes():
    files = metadata.files("pycore") or []
    return sum(f.locate().stat().st_size for f in files if f.locate().is_file())


def import_milliseconds(module, runs):
    """Best cumulative time of `import module` in a fresh interpreter, in ms."""
    best = float("inf")
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
        ).stderr
        # "import time:      self [us] | cumulative | imported package"
        top = [int(m.group(1)) for m in re.finditer(rf"\|\s*(\d+) \| {module}$", err, re.MULTILINE)]
        best = min(best, top[-1] / 1000)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-size-mb", type=float, default=None)
    args = parser.parse_args()
    size_mb = installed_bytes() / 1e6
    ms = import_milliseconds("pycore", args.runs)
    numpy_ms = import_milliseconds("numpy", args.runs)
    print(
        f"installed size: {size_mb:.2f} MB; import time (import pycore, numpy included): "
        f"{ms:.0f} ms, of which numpy alone {numpy_ms:.0f} ms; best of {args.runs} (python {sys.version.split()[0]})"
    )
    if args.max_size_mb is not None and size_mb > args.max_size_mb:
        sys.exit(f"installed size {size_mb:.2f} MB is over {args.max_size_mb} MB")


if __name__ == "__main__":
    main()
