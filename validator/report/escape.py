"""Escaping for every place a user-supplied string lands: class names, file names, sample ids, policy fields,
layer names and the messages built from them. One function per sink; every writer calls these.

========================  =====================================================================================
sink                      rule
========================  =====================================================================================
:func:`gh_data`           GitHub workflow command data (after ``::``): ``%`` ``\\r`` ``\\n`` -> ``%25`` ``%0D`` ``%0A``;
                          other control characters (ESC: the log viewer acts on ANSI codes) -> ``%XX``, shown as is
:func:`gh_property`       a workflow command property (``title=``): as data, and ``:`` ``,`` -> ``%3A`` ``%2C``
:func:`md_text`           Markdown text and table cells (summary.md, the step summary, the MLflow run
                          description): one line (line breaks -> ``↵``, other controls -> ``\\xNN``), ``\\``
                          and the punctuation that starts markup (`````*_[]<>|&~``) backslash-escaped
:func:`md_code`           a Markdown code span: a backtick fence longer than any backtick run inside, ``|`` ->
                          ``\\|`` (GFM tables split on it even inside a span), one line
:func:`xml_text`          JUnit XML: characters XML 1.0 cannot hold (C0 controls but tab/LF/CR, U+FFFE/FFFF,
                          lone surrogates) -> U+FFFD; ElementTree escapes ``& < > "`` and CR/LF/tab in
                          attributes itself
:func:`html_text`         HTML text and attribute values: ``& < > " '`` -> entities
:func:`terminal`          a line the CLI prints: control characters (CR, LF, ESC, C1, U+2028/9) -> ``\\n``
                          ``\\r`` ``\\xNN`` ``\\uNNNN``, so no user text starts a line (a GitHub workflow
                          command must start one) or moves the cursor
:func:`mlflow_value`      an MLflow tag or param value: ``str``, NUL and lone surrogates -> U+FFFD (database
                          backends refuse them), at most 8000 (tags) / 6000 (params) characters, a cut marked
:func:`mlflow_key`        a part of an MLflow metric name or image key: at most ``limit`` characters (MLflow
                          refuses names over 250), a cut one ending in a hash of the whole (names stay unique)
:func:`filename`          a part of a file name: ``[A-Za-z0-9_.-]`` and other letters/digits kept, the rest ->
                          ``_``; changed or over ``limit`` characters: a hash of the original appended
========================  =====================================================================================

Pure functions of ``str(value)``: no I/O, no imports beyond the standard library.
"""

from __future__ import annotations

import hashlib
import html
import re

MLFLOW_TAG_LIMIT = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH (longer values are cut or refused)
MLFLOW_PARAM_LIMIT = 6000  # MAX_PARAM_VAL_LENGTH
MLFLOW_KEY_LIMIT = 250  # MAX_ENTITY_KEY_LENGTH: metric names, tag and param keys
FILENAME_LIMIT = 64
LINE_BREAK = "↵"

_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAKS = re.compile("\r\n|[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_GH_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TERMINAL_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TERMINAL_BAD = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def text(value) -> str:
    """``str(value)`` with lone surrogates (unencodable in UTF-8: a JSON ``"\\ud800"``) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", value if isinstance(value, str) else str(value))


def _escaped_control(char: str) -> str:
    return _TERMINAL_NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


# ------------------------------------------------------------------------------------------ GitHub Actions


def gh_data(value) -> str:
    """The message of ``::error ...::<data>`` (the runner's own escaping of command data; the runner decodes
    ``%25 %0D %0A`` and shows any other ``%XX`` as written, so a control character is seen, not acted on)."""
    escaped = text(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return _GH_CONTROLS.sub(lambda m: f"%{ord(m.group()):02X}", escaped)


def gh_property(value) -> str:
    """A property value of a workflow command (``title=<value>``): ``:`` and ``,`` end a property."""
    return gh_data(value).replace(":", "%3A").replace(",", "%2C")


# ------------------------------------------------------------------------------------------------ Markdown


def md_text(value) -> str:
    """Inline Markdown text on one line (a table cell, a list item, a sentence)."""
    one_line = _LINE_BREAKS.sub(LINE_BREAK, text(value))
    one_line = _CONTROLS.sub(lambda m: _escaped_control(m.group()), one_line)
    return _MD_SPECIAL.sub(r"\\\1", one_line)


def md_code(value, *, cell: bool = True) -> str:
    """A code span showing ``value`` literally; ``cell``: it sits in a table row (``|`` escaped)."""
    body = _LINE_BREAKS.sub(LINE_BREAK, text(value))
    body = _CONTROLS.sub(lambda m: _escaped_control(m.group()), body)
    if cell:
        body = body.replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


# ------------------------------------------------------------------------------------------ XML and HTML


def xml_text(value) -> str:
    """Text or an attribute value for ElementTree (which escapes the markup characters itself)."""
    return _XML_BAD.sub("\ufffd", value if isinstance(value, str) else str(value))


def html_text(value) -> str:
    """Text or a quoted attribute value in HTML."""
    return html.escape(text(value), quote=True)


# --------------------------------------------------------------------------------------------- terminal


def terminal(value) -> str:
    """One printed line: control characters shown as escapes, never acted on."""
    return _TERMINAL_BAD.sub(lambda m: _escaped_control(m.group()), text(value))


def plot_text(value) -> str:
    """Text drawn by matplotlib: control characters shown as escapes (matplotlib would warn with them raw, on
    stderr), and ``$`` escaped so that a class name never starts mathtext (an odd ``$`` is a parse error)."""
    return terminal(value).replace("$", r"\$")


# ----------------------------------------------------------------------------------------------- MLflow


def mlflow_value(value, limit: int = MLFLOW_TAG_LIMIT) -> str:
    """A tag (or, with ``limit=MLFLOW_PARAM_LIMIT``, a param) value MLflow and its stores accept as given."""
    value = text(value).replace("\x00", "\ufffd")
    if len(value) <= limit:
        return value
    marker = f"... (truncated: {len(value)} characters)"
    return value[: limit - len(marker)] + marker


def mlflow_key(value, limit: int) -> str:
    """A key part of at most ``limit`` characters; a longer one is cut and ends in ``-<hash of the whole>``."""
    value = text(value)
    return value if len(value) <= limit else f"{value[: limit - 9]}-{_digest(value)}"


# ------------------------------------------------------------------------------------------- file names


def filename(value, limit: int = FILENAME_LIMIT) -> str:
    """A file-name part that is the name where it is safe; otherwise a safe form plus a hash of the name, so
    two names never share a file (``x|y`` and ``x_y``) and no name is too long for the file system."""
    raw = text(value)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in raw).strip(".") or "_"
    if safe == raw and len(safe) <= limit:
        return safe
    return f"{safe[: limit - 9]}-{_digest(raw)}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


__all__ = ["gh_data", "gh_property", "md_text", "md_code", "xml_text", "html_text", "terminal", "mlflow_value",
           "mlflow_key", "filename", "text", "MLFLOW_TAG_LIMIT", "MLFLOW_PARAM_LIMIT", "MLFLOW_KEY_LIMIT"]
