"""Sphinx configuration for pycore's documentation (built by .ci/docs).

pycore must be importable (installed, or PYTHONPATH pointing at a checkout with the compiled
modules built in place): the API reference is generated from the docstrings of the installed
package, and every code example on the pages runs under `sphinx-build -b doctest`. This file
does not add the source tree to sys.path on purpose: the sources without their compiled modules
would shadow an installed pycore.
"""
import os
import sys

import pycore

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "pycore"
author = "pycore contributors"
copyright = "2026, pycore contributors"
version = release = pycore.__version__

extensions = [
    "myst_parser",              # the guide pages are Markdown
    "sphinx.ext.autodoc",       # the API reference comes from the docstrings
    "sphinx.ext.autosummary",   # the table at the top of each reference page
    "sphinx.ext.napoleon",      # the docstrings' Google style: Args:, Returns:, Shape:, ...
    "sphinx.ext.doctest",       # every example on the pages runs: sphinx-build -b doctest
    "sphinx.ext.mathjax",
    "plain_docstrings",         # _ext/: pycore's plain-text docstrings, rendered as help() shows them
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "requirements.txt"]
root_doc = "index"

# Markdown: ```{testcode} fences are doctest directives; $...$ maths; heading anchors for links.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# The docstrings write `x` for code, as Markdown does.
default_role = "literal"

# Docstrings: Google style with pycore's own sections next to napoleon's.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape", "Backward"]
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True   # signatures show `dtype=np.float32`, as written
autosummary_generate = False    # the reference pages are written by hand, grouped by topic

# The examples share one namespace per page; numpy and pycore are always there. Examples that
# compare with PyTorch say `:skipif: torch is None`: the docs build without it.
doctest_global_setup = """
import numpy as np
import pycore
pycore.manual_seed(0)
np.random.seed(0)
try:
    import torch
except ImportError:
    torch = None
"""
doctest_test_doctest_blocks = "default"

html_theme = "furo"
html_title = "pycore"
