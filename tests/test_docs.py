"""The documentation site (docs/): its API reference covers every public name, its pages have
no code example that escapes testing, and the docstring hook renders pycore's plain-text
docstrings faithfully. Building the site and running its examples is .ci/docs's job (Sphinx);
these checks need neither Sphinx nor PyTorch."""
import importlib
import inspect
import pathlib
import re
import sys

import numpy as np
import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import plain_docstrings  # noqa: E402  (docs/_ext, not a package)

# Every module whose __all__ is public API; each has a page docs/api/<module>.rst.
PUBLIC_MODULES = ["pycore", "pycore.nn", "pycore.functional", "pycore.optim", "pycore.train",
                  "pycore.data", "pycore.sequences", "pycore.datasets", "pycore.serialization",
                  "pycore.distributed", "pycore.memory", "pycore.testing"]
DIRECTIVE = re.compile(r"^\.\. (?:auto(?:class|function|data|exception)|py:(?:data|class|function)):: (\S+)",
                       re.MULTILINE)
CURRENT_MODULE = re.compile(r"^\.\. (?:currentmodule|automodule):: (\S+)", re.MULTILINE)


def documented_objects():
    """Fully qualified names that the reference pages document, and the objects they name."""
    names = set()
    for page in (DOCS / "api").glob("*.rst"):
        text = page.read_text()
        modules = CURRENT_MODULE.findall(text)
        names.update(modules)
        module = modules[-1] if modules else ""
        names.update(f"{module}.{name}" for name in DIRECTIVE.findall(text))
    return names


def test_api_reference_has_every_public_name():
    """A name is documented under its own module, or the same object is documented under
    another public name (pycore.save is pycore.serialization.save)."""
    documented = documented_objects()
    documented_ids = set()
    for qualified in documented:
        module, _, name = qualified.rpartition(".")
        try:
            documented_ids.add(id(getattr(importlib.import_module(module), name)))
        except (ImportError, AttributeError, ValueError):
            pass
    missing = []
    for module_name in PUBLIC_MODULES:
        assert (DOCS / "api" / f"{module_name}.rst").is_file(), f"no reference page for {module_name}"
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                ok = obj.__name__ in documented
            else:
                ok = f"{module_name}.{name}" in documented or id(obj) in documented_ids
            if not ok:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names missing from docs/api/*.rst: {missing}"


def test_reference_names_exist():
    """No page documents a name that is gone (autodoc would fail too; this says which)."""
    stale = []
    for qualified in documented_objects():
        module, _, name = qualified.rpartition(".")
        try:
            importlib.import_module(qualified)
            continue
        except ImportError:
            pass
        if not hasattr(importlib.import_module(module), name):
            stale.append(qualified)
    assert not stale, stale


def test_every_page_example_is_tested():
    """Python code on the pages goes in {testcode}/{doctest} blocks, which sphinx-build -b
    doctest runs; a plain ```python fence would be shown without ever running."""
    untested = []
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if re.match(r"^\s*(```|~~~)\s*(python|py|pycon|ipython)\b", line):
                untested.append(f"{page.relative_to(DOCS)}:{number}")
    assert not untested, f"untested code blocks (use ```{{testcode}} or ```{{doctest}}): {untested}"


def test_toctree_lists_every_page():
    """Sphinx warns (and -W fails) on a page outside every toctree; this names it early."""
    pages = {str(p.relative_to(DOCS).with_suffix("")) for p in DOCS.rglob("*.md") if "_build" not in p.parts}
    pages |= {str(p.relative_to(DOCS).with_suffix("")) for p in (DOCS / "api").glob("*.rst")}
    listed = {"index"}
    for page in list(DOCS.rglob("*.md")):
        folder = page.parent.relative_to(DOCS)
        for block in re.findall(r"```\{toctree\}(.*?)```", page.read_text(), re.S):
            for entry in block.splitlines():
                entry = entry.strip()
                if entry and not entry.startswith(":"):
                    listed.add(str(folder / entry) if str(folder) != "." else entry)
    assert pages - listed == set(), f"pages in no toctree: {sorted(pages - listed)}"


def test_readme_python_examples_run():
    """The README's code is the first thing a newcomer runs: every ```python block executes."""
    readme = (DOCS.parent / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)
    assert blocks, "the README should show a first example"
    for block in blocks:
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)
        if "loss" in namespace:                      # the training loop ran to a finite loss
            assert np.isfinite(namespace["loss"])


# The docstring hook ---------------------------------------------------------------------------

def test_inline_markup_is_escaped_outside_code():
    assert plain_docstrings.escape_inline("y = a * b, |x|, clip_grad_norm_ and `p * q_`") == \
        r"y = a \* b, \|x\|, clip_grad_norm\_ and `p * q_`"
    assert plain_docstrings.escape_inline(r"a\b") == r"a\\b"
    assert plain_docstrings.escape_inline("set_to_none stays") == "set_to_none stays"


def test_indented_runs_become_literal_blocks():
    lines = ["Per parameter p:", "    p = p - lr * g", "    done", "After."]
    assert plain_docstrings.convert(lines) == \
        ["Per parameter p:", "", "::", "", "    p = p - lr * g", "    done", "", "After."]


def test_google_sections_are_left_to_napoleon_and_shape_is_verbatim():
    lines = ["Summary.", "", "Args:", "    x (array): the input,", "        (N, C) floats.",
             "", "Shape:", "    input (N, *) -> output (N, *)", "", "Example:", "    >>> f(2 * 3)"]
    out = plain_docstrings.convert(lines)
    assert out[:5] == ["Summary.", "", "Args:", "    x (array): the input,", "        (N, C) floats."]
    shape = out.index(".. rubric:: Shape")
    assert out[shape + 2: shape + 5] == ["::", "", "        input (N, *) -> output (N, *)"]
    assert out[-1] == "    >>> f(2 * 3)"      # doctest lines are never escaped


def test_bullets_keep_their_continuations():
    lines = ["Rules:", "", "- first item, which", "  goes on", "- second"]
    assert plain_docstrings.convert(lines) == lines


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_docstring_converts(module_name):
    """The hook accepts every public docstring (no exception, nothing dropped but blanks)."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        doc = inspect.getdoc(getattr(module, name)) or ""
        out = plain_docstrings.convert(doc.splitlines())
        assert _words(out) == _words(doc.splitlines()), f"{module_name}.{name}"


def _words(lines):
    """The text without what the hook adds or moves: whitespace, escapes, colons, rubrics."""
    return re.sub(r"[\s\\:]", "", "".join(lines)).replace("..rubric", "")


def test_private_bases_show_their_public_ancestor():
    class Public:
        pass

    class _Private(Public):
        pass

    class _Mixin:
        pass

    bases = [_Private, _Mixin, ValueError]
    plain_docstrings.public_bases(None, "Layer", None, {}, bases)
    assert bases == [Public, object, ValueError]
