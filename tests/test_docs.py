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


# --- Every public callable documents its arguments, its result and (layers) its shapes ---------
# Issue 15: "every public name in __all__ documented with Args/Returns/Shape; forward and backward
# included". The sections are Google style (napoleon renders them). A function annotated
# `-> None` needs no Returns:; a layer (an nn.Module other than the containers) needs Shape:, and
# its forward and backward (its own or inherited) need Args: and Returns: like any function.
CONTAINERS = {"Module", "Sequential", "ModuleList", "ModuleDict"}
SECTION_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*):\s*$")
ARGS = {"args", "arguments", "parameters", "attributes"}
RETURNS = {"returns", "return", "yields"}


def _sections(doc):
    return {m.group(1).lower() for m in map(SECTION_LINE.match, (doc or "").splitlines()) if m}


def _parameters(fn):
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):      # a builtin without a signature documents itself
        return []
    return [p for p in signature.parameters.values() if p.name not in ("self", "cls")]


def _returns_none(fn):
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation is None or annotation == "None"


def _callable_problems(fn, where):
    doc = inspect.getdoc(fn)
    if not doc:
        return [f"{where}: no docstring"]
    found, problems = _sections(doc), []
    if _parameters(fn) and not ARGS & found:
        problems.append(f"{where}: no Args:")
    if not _returns_none(fn) and not RETURNS & found:
        problems.append(f"{where}: no Returns: (or annotate -> None)")
    return problems


def _owned_public_names(module_name):
    """(name, object) of the module's __all__ that this module owns: defined in it or in one of
    its private submodules, not re-exported from another public module (checked there)."""
    module = importlib.import_module(module_name)
    others = [m for m in PUBLIC_MODULES if m != module_name and m.startswith(module_name + ".")]
    for name in module.__all__:
        obj = getattr(module, name)
        home = getattr(obj, "__module__", module_name) or module_name
        if inspect.ismodule(obj) or not home.startswith(module_name):
            continue
        if any(home == other or home.startswith(other + ".") for other in others):
            continue
        yield name, obj


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_docstrings_have_args_returns_shape(module_name):
    from pycore.nn import Module
    problems = []
    for name, obj in _owned_public_names(module_name):
        where = f"{module_name}.{name}"
        if not inspect.isclass(obj):
            if callable(obj):
                problems += _callable_problems(obj, where)
            continue
        doc = inspect.getdoc(obj)
        if not doc:
            problems.append(f"{where}: no class docstring")
            continue
        # object.__init__'s (*args, **kwargs) is no constructor argument (Callback takes none)
        if (not issubclass(obj, BaseException) and obj.__init__ is not object.__init__ and _parameters(obj.__init__)
                and not ARGS & _sections(doc)):
            problems.append(f"{where}: no Args: for the constructor")
        if issubclass(obj, Module) and name not in CONTAINERS:
            if "shape" not in _sections(doc):
                problems.append(f"{where}: no Shape:")
            for method in ("forward", "backward"):
                problems += _callable_problems(getattr(obj, method), f"{where}.{method}")
    assert not problems, "\n".join(problems)
