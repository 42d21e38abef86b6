"""Read a policy document and remember where each key sits, so errors can name file and line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from validator.errors import PolicyError, UsageError
from validator.limits import compose_bounded, read_text_bounded


def suggest(word: object, choices: Iterable[str], *, list_if_at_most: int = 12) -> str:
    """' (did you mean 'x'?)' for the closest choice, else the valid choices when there are few."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if options and len(options) <= list_if_at_most:
        return f" (valid: {', '.join(options)})"
    return ""


class Source:
    """Where a policy came from: the file name and a map from key path to 1-based line number."""

    def __init__(self, name: str, lines: Mapping[str, int] | None = None, kind: str = "policy",
                 error_type: type[UsageError] = PolicyError):
        self.name = name
        self.lines = dict(lines or {})
        self.kind = kind  # the word the messages start with ("policy", "config")
        self.error_type = error_type

    def line_of(self, path: str) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one (a missing key points at its parent)."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = _parent(path)

    def error(self, path: str, message: str) -> UsageError:
        """A PolicyError (or ``error_type``) that names file, line and key path."""
        line = self.line_of(path)
        where = self.name if line is None else f"{self.name}, line {line}"
        key = f" {path}:" if path else ""
        return self.error_type(f"{self.kind} {where}:{key} {message}")


def _parent(path: str) -> str:
    """'checks[2].metric' -> 'checks[2]' -> 'checks' -> ''."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def read_policy_file(path: str | Path, kind: str = "policy",
                     error_type: type[UsageError] = PolicyError) -> tuple[object, Source]:
    """Parse a YAML policy file safely; return the data and a Source with line numbers per key path.

    Bounded before anything grows with the input: a file over ``MAX_TEXT_BYTES`` is refused unread, and a
    document over ``MAX_YAML_NODES`` nodes with its aliases expanded (an alias bomb) is refused after composing
    (which shares an alias's node, so it costs what the text costs) and before it is indexed or loaded."""
    name = str(path)
    try:
        text = read_text_bounded(path, f"{kind} {name}", error_type)
    except FileNotFoundError:
        raise error_type(f"{kind} {name}: file not found") from None
    except IsADirectoryError:
        raise error_type(f"{kind} {name}: is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise error_type(f"{kind} {name}: not a text file (expected UTF-8 YAML)") from None
    except OSError as exc:
        raise error_type(f"{kind} {name}: cannot read: {exc.strerror or exc}") from None
    if not text.strip():
        raise error_type(f"{kind} {name}: the file is empty")
    try:
        root, data = compose_bounded(text, f"{kind} {name}", error_type)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}, line {mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error_type(f"{kind} {where}: not valid YAML: {problem}") from None
    source = Source(name, kind=kind, error_type=error_type)
    if root is not None:
        _index(root, "", source)
    return data, source


def _index(node: yaml.Node, path: str, source: Source) -> None:
    """Record the line of every mapping key and sequence item under ``node``; refuse duplicate keys."""
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                # safe_load keeps the last value silently; a duplicated check key is almost always a mistake
                source.lines[child] = key_node.start_mark.line + 1
                raise source.error(child, f"duplicate key {key!r}")
            seen.add(key)
            source.lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, f"{path}[{i}]", source)
