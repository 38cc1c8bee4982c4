"""Write or check pycore/_C.pyi, the type stub of the compiled module.

The stub is pybind11-stubgen's output for the pycore._C that this interpreter imports,
with the values of the module's constants dropped (`compiler: str = 'gcc 12.2.0'` becomes
`compiler: str`): they describe one build, not the interface. tests/test_packaging.py
compares the checked-in file with a fresh one, so a changed binding fails the tests until
the stub is regenerated:

    python .ci/stubgen.py            # rewrite pycore/_C.pyi (pycore._C must be importable)
    python .ci/stubgen.py --check    # exit 1 and show a diff when the file is out of date
"""

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = os.path.join(REPO, "pycore", "_C.pyi")
CONSTANT_VALUE = re.compile(r"^(\w+: [\w.]+) = .*$", re.MULTILINE)


def generate():
    """The stub text for the pycore._C this interpreter imports."""
    import pycore

    # The child must import this same pycore: run it outside the checkout, whose ./pycore has
    # no compiled module after a plain install, with the imported package's folder on its path.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(pycore.__file__))))
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [sys.executable, "-m", "pybind11_stubgen", "--exit-code", "-o", "stubs", "pycore._C"],
            cwd=out,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pybind11-stubgen failed:\n{result.stdout}{result.stderr}")
        with open(os.path.join(out, "stubs", "pycore", "_C.pyi"), encoding="utf-8") as f:
            text = f.read()
    return CONSTANT_VALUE.sub(r"\1", text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    fresh = generate()
    if not args.check:
        with open(STUB, "w", encoding="utf-8") as f:
            f.write(fresh)
        return
    with open(STUB, encoding="utf-8") as f:
        current = f.read()
    if current != fresh:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), STUB, "fresh"))
        sys.exit("pycore/_C.pyi is out of date: run python .ci/stubgen.py")


if __name__ == "__main__":
    main()
