"""Render pycore's plain-text docstrings faithfully in Sphinx.

pycore's docstrings are written for `help()`: Google-style sections (Args:, Returns:, ...)
around plain text that uses `backticks` for code, `*` for multiplication, `|x|` for absolute
values, names ending in `_` (clip_grad_norm_), and indented lines for formulas, tables and code
(no reStructuredText `::` before them). Read as reStructuredText those are emphasis, substitutions,
hyperlink references and "unexpected indentation" errors. This hook runs before napoleon and
makes the text safe without changing what it says:

- a run of lines indented deeper than the text around it (outside a Google section) becomes a
  literal block, shown exactly as `help()` shows it;
- `*`, `|` and a `_` that ends a word are escaped outside backtick spans, literal blocks and
  doctest lines;
- a "Shape:" section becomes a "Shape" heading over a literal block (its lines are formulas).

It also lists every class's own forward and backward, with or without a docstring, and names a
class's public ancestors instead of private base classes.

So writers of docstrings need no reStructuredText; tests/test_docs.py checks the transformation.
"""
import re

# napoleon's section headers (a line of its own ending in a colon); their bodies are left to it.
NAPOLEON_SECTIONS = {
    "args", "arguments", "parameters", "params", "keyword args", "keyword arguments",
    "other parameters", "returns", "return", "yields", "yield", "raises", "raise", "warns",
    "attributes", "example", "examples", "note", "notes", "warning", "warnings", "see also",
    "references", "todo", "methods", "backward",
}
LITERAL_SECTIONS = {"shape"}
SECTION_HEADER = re.compile(r"^(\s*)([A-Za-z][A-Za-z ]*):\s*$")
BULLET = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+")
CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")


def _indent(line):
    return len(line) - len(line.lstrip())


def escape_inline(text):
    """Escape reStructuredText's inline markup outside `code` spans."""
    parts = CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):      # even indices: outside code spans
        part = parts[i].replace("\\", "\\\\").replace("*", r"\*").replace("|", r"\|")
        parts[i] = re.sub(r"_(?![A-Za-z0-9])", r"\\_", part)
    return "".join(parts)


def _is_doctest(line):
    stripped = line.lstrip()
    return stripped.startswith(">>>") or stripped.startswith("...")


def convert(lines):
    """Return the docstring `lines` (already dedented by autodoc) made safe to parse."""
    out = []
    i, n = 0, len(lines)
    base = 0                 # indentation of ordinary text in the current context
    section = None           # "napoleon" while inside such a section's indented body
    bullet_indent = None     # text column of the bullet item being continued
    while i < n:
        line = lines[i]
        if not line.strip():
            out.append(line)
            i += 1
            continue
        indent = _indent(line)
        if section and indent <= base:
            section, base = None, 0
        header = SECTION_HEADER.match(line)
        if header and header.group(2).strip().lower() in LITERAL_SECTIONS:
            # Shape: heading, then its indented body verbatim.
            j = i + 1
            while j < n and (not lines[j].strip() or _indent(lines[j]) > indent):
                j += 1
            body = list(lines[i + 1:j])
            while body and not body[-1].strip():
                body.pop()
            out += ["", f".. rubric:: {header.group(2).strip()}", "", "::", ""]
            out += ["    " + text if text.strip() else "" for text in body] + [""]
            i = j
            continue
        if header and header.group(2).strip().lower() in NAPOLEON_SECTIONS:
            section, base = "napoleon", indent
            out.append(line)
            i += 1
            continue
        if section:
            out.append(line if _is_doctest(line) else escape_inline(line))
            i += 1
            continue
        bullet = BULLET.match(line)
        if bullet and indent == base:
            bullet_indent = bullet.end()
            out.append(escape_inline(line))
            i += 1
            continue
        if bullet_indent is not None and indent == bullet_indent:
            out.append(escape_inline(line))       # a bullet item's continuation
            i += 1
            continue
        bullet_indent = None
        if indent > base and not _is_doctest(line):
            # A deeper-indented run: formulas, a table or code. Verbatim, as help() shows it.
            j = i
            while j < n and (not lines[j].strip() or _indent(lines[j]) > base):
                j += 1
            block = lines[i:j]
            while block and not block[-1].strip():
                block.pop()
            if out and out[-1].strip():
                out.append("")
            out += ["::", ""] + block + [""]
            i = j
            continue
        out.append(line if _is_doctest(line) else escape_inline(line))
        i += 1
    return out


def process_docstring(app, what, name, obj, options, lines):
    lines[:] = convert(list(lines))


# A layer's forward and backward are its API even before they have docstrings of their own.
ALWAYS_SHOWN = {"forward", "backward"}


def show_forward_and_backward(app, what, name, obj, skip, options):
    if what == "class" and name in ALWAYS_SHOWN:
        return False
    return None


def public_bases(app, name, obj, options, bases):
    """Show `Conv2d(Module)`, not `Conv2d(_ConvNd)`: a private base stands for its first
    public ancestor, which the reader can look up."""
    shown = []
    for base in bases:
        public = next((c for c in base.__mro__ if not c.__name__.startswith("_")), object)
        if public not in shown:
            shown.append(public)
    bases[:] = shown


def setup(app):
    app.connect("autodoc-skip-member", show_forward_and_backward)
    app.connect("autodoc-process-bases", public_bases)
    # Before napoleon (priority 500), which turns Google sections into reStructuredText fields.
    app.connect("autodoc-process-docstring", process_docstring, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
