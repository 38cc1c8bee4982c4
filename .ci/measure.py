"""Installed size and import time of the pycore this interpreter imports (README's figures).

Size: every file the installed distribution records (its RECORD: the package, the stubs,
pycore.libs/ with the bundled libgomp), in MB of 10**6 bytes. Import time: `import pycore`
in a fresh interpreter under `python -X importtime`, the cumulative time of the top-level
pycore import, which includes numpy (pycore imports it first); then `import pycore.nn` (the
subpackages load on first use, so a model script pays this); best of N runs, since a busy
machine only ever adds time.

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
    """Best time of `import module` in a fresh interpreter, in ms: the sum of the cumulative
    times of the top-level imports it makes (`pycore.nn` imports `pycore`, then `pycore.nn`)."""
    best = float("inf")
    top_level = [".".join(module.split(".")[: i + 1]) for i in range(module.count(".") + 1)]
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
        ).stderr
        # "import time:      self [us] | cumulative | imported package"; one space: top level
        total = 0
        for name in top_level:
            found = re.findall(rf"\|\s*(\d+) \| {re.escape(name)}$", err, re.MULTILINE)
            total += int(found[-1]) if found else 0
        best = min(best, total / 1000)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-size-mb", type=float, default=None)
    args = parser.parse_args()
    size_mb = installed_bytes() / 1e6
    ms = import_milliseconds("pycore", args.runs)
    nn_ms = import_milliseconds("pycore.nn", args.runs)
    numpy_ms = import_milliseconds("numpy", args.runs)
    print(
        f"installed size: {size_mb:.2f} MB; import time (numpy included): import pycore {ms:.0f} ms, "
        f"import pycore.nn {nn_ms:.0f} ms, numpy alone {numpy_ms:.0f} ms; best of {args.runs} "
        f"(python {sys.version.split()[0]})"
    )
    if args.max_size_mb is not None and size_mb > args.max_size_mb:
        sys.exit(f"installed size {size_mb:.2f} MB is over {args.max_size_mb} MB")


if __name__ == "__main__":
    main()
