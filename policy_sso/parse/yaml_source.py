"""Positioned YAML: load a document keeping every node's line and column, and
map JSON Schema errors back to those positions as diagnostics.

PyYAML's composer gives nodes with marks; converting them ourselves keeps a
``path -> (line, col)`` table so a schema error at ``/when/0/if`` points at the
line where that node starts.

Validators are built once per schema. A document is first checked by a
fastjsonschema validator (the schema compiled to Python code, about 12x faster
on a 10,000-client file); only an invalid document goes through
python-jsonschema, which lists every error with its path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.abc import Traversable
from importlib.resources import files
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from jsonschema import Draft202012Validator

from policy_sso.diagnostics import Diagnostic, Related
from policy_sso.parse.schema_errors import explain_schema_error
from policy_sso.parse.yaml_errors import explain_yaml_error

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Config files nest a few levels. Deeper input is refused with a diagnostic: the
# conversion below recurses, and libyaml's C composer overflows the C stack
# (a segfault, not an exception) somewhere past 20,000 levels, so a text long
# enough to nest that deep is scanned event by event first.
MAX_DEPTH = 64
_SCAN_DEPTH_ABOVE = 10_000  # characters; a shorter text cannot nest deeper than this

Path_ = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class YamlDocument:
    """One YAML document: plain data plus where each path's node (and key) starts."""

    file: str
    data: Any
    positions: dict[Path_, tuple[int, int]]
    key_positions: dict[Path_, tuple[int, int]]
    # where each node (and key) ends: (line, col) just past it
    ends: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_ends: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path_) -> tuple[int, int]:
        """Return the (line, col) of the node at ``path`` or of its nearest ancestor."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def key_position(self, path: Path_) -> tuple[int, int]:
        """Return where the key of the mapping entry at ``path`` starts (else the node)."""
        return self.key_positions.get(path) or self.position(path)

    def end(self, path: Path_, *, at_key: bool = False) -> tuple[int, int]:
        """Return where the node (or key) at exactly ``path`` ends, or (0, 0) when unknown or empty."""
        if at_key and path in self.key_ends:
            start, end = self.key_positions[path], self.key_ends[path]
        elif path in self.positions:
            start, end = self.positions[path], self.ends.get(path, (0, 0))
        else:
            return 0, 0
        return end if end > start else (0, 0)

    def span(self, path: Path_) -> tuple[int, int, int]:
        """Return (line, col, end_col) of an entry: its key up to the end of its value when on one line."""
        line, col = self.key_position(path) if path else self.position(path)
        end_line, end_col = self.end(path)
        if end_line != line:
            end_line, end_col = self.end(path, at_key=True)
        return line, col, end_col if end_line == line and end_col > col else 0

    def node_span(self, path: Path_, underline: Path_ | None = None) -> tuple[int, int, int]:
        """Return (line, col, end_col) of the node at ``path``, underlined to the end of the node at
        ``underline`` (default: itself) when that ends on the same line."""
        line, col = self.position(path)
        end_line, end_col = self.end(path if underline is None else underline)
        return line, col, end_col if end_line == line and end_col > col else 0

    def diagnostic(self, path: Path_, code: str, message: str, hint: str = "",
                   *, at_key: bool = False) -> Diagnostic:
        """Return a diagnostic positioned at ``path`` (at its key when ``at_key``)."""
        line, col = self.key_position(path) if at_key else self.position(path)
        end_line, end_col = self.end(path, at_key=at_key)
        return Diagnostic(self.file, line, col, code, message, hint, end_line=end_line, end_col=end_col)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _end(node: yaml.Node) -> tuple[int, int]:
    return node.end_mark.line + 1, node.end_mark.column + 1


class _TooLarge(Exception):
    """The document nests too deep or expands, through aliases, far beyond its size."""

    def __init__(self, node: yaml.Node | yaml.Event, message: str) -> None:
        super().__init__(message)
        self.line, self.col = node.start_mark.line + 1, node.start_mark.column + 1


class _Converter:
    """Turns one composed document into plain data, recording each path's position."""

    def __init__(self, doc: YamlDocument, errors: list[Diagnostic], budget: int) -> None:
        self.doc, self.errors = doc, errors
        # A fresh constructor per document: SafeConstructor caches every node it builds.
        self.constructor = yaml.constructor.SafeConstructor()
        self.budget = budget  # nodes left: an alias bomb ("billion laughs") runs out
        self.active: set[int] = set()  # collections being converted: an alias to one is a cycle

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        doc = self.doc
        doc.positions[path] = _mark(node)
        doc.ends[path] = _end(node)
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge(node, "aliases expand this document far beyond its size")
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if len(path) >= MAX_DEPTH:
                raise _TooLarge(node, f"nesting deeper than {MAX_DEPTH} levels")
            if id(node) in self.active:
                line, col = _mark(node)
                self.errors.append(Diagnostic(doc.file, line, col, "E_YAML", "recursive alias"))
                return None
            self.active.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self.active.discard(id(node))
        if node.tag == _STR_TAG:  # most scalars: the text is the value, no constructor needed
            return node.value
        try:
            return self.constructor.construct_object(node)
        except Exception:  # a tag's constructor may raise anything: !!int "x", 2020-13-45
            line, col = _mark(node)
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            self.errors.append(Diagnostic(doc.file, line, col, "E_YAML",
                                          f"invalid scalar {node.value!r} (as {tag})",
                                          "quote the value to keep it a string"))
            return node.value  # the text as written, so the schema checks go on without a None

    def _collection(self, node: yaml.MappingNode | yaml.SequenceNode, path: Path_) -> Any:
        doc = self.doc
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                self.errors.append(Diagnostic(doc.file, line, col, "E_TYPE", "mapping keys must be strings"))
                continue
            key = key_node.value
            if key in result:
                line, col = _mark(key_node)
                end_line, end_col = _end(key_node)
                first_line, first_col = doc.key_positions[(*path, key)]
                first_end = doc.key_ends[(*path, key)]
                note = Related(doc.file, first_line, first_col, "first written here",
                               first_end[1] if first_end[0] == first_line else 0)
                self.errors.append(Diagnostic(
                    doc.file, line, col, "E_DUPLICATE_KEY", f"key {key!r} appears twice in this mapping",
                    "YAML keeps only one of the two: merge them into one", end_line=end_line,
                    end_col=end_col if end_line == line else 0, related=(note,)))
                continue
            doc.key_positions[(*path, key)] = _mark(key_node)
            doc.key_ends[(*path, key)] = _end(key_node)
            result[key] = self.convert(value_node, (*path, key))
        return result


def _check_depth(text: str) -> None:
    """Raise _TooLarge when collections nest deeper than MAX_DEPTH (events only, no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooLarge(event, f"nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml_documents(text: str, file: str) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Return the documents in a YAML text with positions, and any YAML-level errors."""
    errors: list[Diagnostic] = []
    docs: list[YamlDocument] = []
    try:
        if len(text) > _SCAN_DEPTH_ABOVE:
            _check_depth(text)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except _TooLarge as err:
        return [], [Diagnostic(file, err.line, err.col, "E_YAML", str(err))]
    except yaml.MarkedYAMLError as err:
        return [], [explain_yaml_error(err, text, file)]
    except (yaml.YAMLError, ValueError) as err:  # e.g. a NUL byte: the reader rejects it
        return [], [Diagnostic(file, 1, 1, "E_YAML", str(err).splitlines()[0])]
    # Without aliases a document has at most about two nodes a character.
    budget = 2 * len(text) + 1000
    for node in nodes:
        if node is None:
            continue
        doc = YamlDocument(file, None, {}, {})
        converter = _Converter(doc, errors, budget)
        try:
            doc.data = converter.convert(node, ())
        except _TooLarge as err:
            return [], [*errors, Diagnostic(file, err.line, err.col, "E_YAML", str(err))]
        budget = converter.budget
        docs.append(doc)
    return docs, errors


# --- JSON Schema ------------------------------------------------------------

def _schema_dir() -> Path | Traversable:
    """Return the JSON Schemas: the checkout's schemas/, or the installed package's copy."""
    checkout = Path(__file__).resolve().parents[2] / "schemas"
    if checkout.is_dir():
        return checkout
    return files("policy_sso.schemas")


SCHEMA_DIR = _schema_dir()


@cache
def load_schema(schema_name: str) -> dict[str, Any]:
    """Return ``schemas/<schema_name>.schema.json`` (read once)."""
    return json.loads((SCHEMA_DIR / f"{schema_name}.schema.json").read_text())


@cache
def validator(schema_name: str) -> Draft202012Validator:
    """Return the (cached) python-jsonschema validator, which reports every error."""
    return Draft202012Validator(load_schema(schema_name))


@cache
def fast_validator(schema_name: str) -> Callable[[Any], Any]:
    """Return the (cached) fastjsonschema validator: raises on the first error."""
    return fastjsonschema.compile(load_schema(schema_name))


def is_valid(data: Any, schema_name: str) -> bool:
    """Return whether ``data`` conforms to the schema (the fast path)."""
    try:
        fast_validator(schema_name)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def schema_diagnostics(doc: YamlDocument, schema_name: str) -> Iterator[Diagnostic]:
    """Yield one diagnostic per JSON Schema violation, at the offending node's line."""
    if is_valid(doc.data, schema_name):
        return
    root = load_schema(schema_name)
    for raw in validator(schema_name).iter_errors(doc.data):
        yield from explain_schema_error(doc, raw, root)
