"""The record schema (schema/record.schema.json) as the tests use it.

``validator()``: the schema's compiled draft 2020-12 validator (format
checking off: ``format`` is an annotation there, the patterns say what is
checked).  ``problems(rec)``: one line per error, empty for a valid record.
``RecordScan``: what tests/conftest.py runs over every JSON-lines file the
suite wrote, one line at a time.

jsonschema takes ~1-3 ms a record (it walks ~65 subschemas each), and the
suite writes ~440k lines: validating every one would add ten minutes or
more.  So the scan validates every record whose *shape* it has not seen yet
this session, plus a deterministic sample of each file (its first
``FIRST`` records and every ``EVERY``-th after).  A shape is what the
schema's structure rules see: the keys of every object and the type of
every value, in order, with the values of the enumerated fields (kind,
end_reason, anomalies, starttls, a body's encoding and decode_error, a
tunnel's type, an alert's sender) and header maps reduced to "a map".  A
record that differs from a validated one only in a value the schema checks
by pattern or range (a ts, a uid, a port) is checked only when sampled.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "record.schema.json"

FIRST = 10
EVERY = 500


@cache
def schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


@cache
def validator():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def problems(rec) -> list[str]:
    """Every schema error of ``rec``, as ``$.path: message``, most specific first."""
    errors = sorted(validator().iter_errors(rec), key=lambda e: (-len(e.absolute_path), e.json_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


# --- shapes -----------------------------------------------------------------------

_ENUMS = frozenset(("kind", "end_reason", "anomalies", "starttls", "encoding", "decode_error", "type", "from"))


def _deep(v, key=None):
    t = type(v)
    if t is dict:
        if key == "headers":
            return dict  # open: any names
        return tuple([(k, _deep(x, k)) for k, x in v.items()])
    if t is list:
        return (list, frozenset([_deep(x, key) for x in v]))
    if t is str and key in _ENUMS:
        return v
    return t


def _part(d):
    """request, response, tls: flat but for a few fields; C-speed for the flat part."""
    if type(d) is not dict:
        return _deep(d)
    out = (tuple(d), tuple(map(type, d.values())))
    for k, v in d.items():
        if k != "headers" and (type(v) is dict or (type(v) is list and v)):
            out += ((k, _deep(v, k)),)
        elif k == "starttls":
            out += (v,)
    return out


def shape(rec: dict) -> tuple:
    """The record's shape (module docstring); equal shapes pass or fail the
    schema's structure rules alike."""
    out = [tuple(rec), tuple(map(type, rec.values())), rec.get("kind"), rec.get("end_reason")]
    for k, v in rec.items():
        if type(v) is dict:
            out.append(_part(v) if k in ("request", "response", "tls") else _deep(v, k))
        elif type(v) is list and v:
            out.append(tuple(v) if k == "anomalies" else _deep(v, k))
    return tuple(out)


class RecordScan:
    """Feed it each line of each file (``line(path, n, rec)``); ``invalid``
    lists ``path:n: $.field: message`` for the records that fail."""

    def __init__(self) -> None:
        self.seen: set = set()
        self.records = 0
        self.validated = 0
        self.invalid: list[str] = []
        self.ecs_documents = 0

    def line(self, path, n: int, rec) -> None:
        if type(rec) is dict and "kind" not in rec and "@timestamp" in rec and "sniffd" in rec:
            # An ECS document ([output] format = "ecs"): few in the suite,
            # each checked against schema/ecs.schema.json.
            self.ecs_documents += 1
            found = ecs_problems(rec)
            if found:
                self.invalid.append(f"{path}:{n}: (schema/ecs.schema.json) {found[0]}")
            return
        if type(rec) is not dict or "kind" not in rec:
            return  # not a sniffd record (an operational event, a test's own JSON)
        self.records += 1
        try:
            key = shape(rec)
            new = key not in self.seen
        except TypeError:  # an unhashable oddity: validate it
            key, new = None, True
        if not (new or n <= FIRST or n % EVERY == 0):
            return
        self.validated += 1
        found = problems(rec)
        if found:
            self.invalid.append(f"{path}:{n}: {found[0]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
        elif key is not None:
            self.seen.add(key)


ECS_SCHEMA_PATH = SCHEMA_PATH.with_name("ecs.schema.json")


@cache
def ecs_validator():
    from jsonschema import Draft202012Validator

    with open(ECS_SCHEMA_PATH, encoding="utf-8") as f:
        ecs_schema = json.load(f)
    Draft202012Validator.check_schema(ecs_schema)
    return Draft202012Validator(ecs_schema)


def ecs_problems(doc) -> list[str]:
    """Every error of an ECS document against schema/ecs.schema.json."""
    errors = sorted(ecs_validator().iter_errors(doc), key=lambda e: (-len(e.absolute_path), e.json_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


_checked: set = set()


def assert_valid(rec: dict) -> None:
    """For tests that build records in memory (the fuzzers): ``rec`` is valid,
    checked once per shape per session (as the scan does, without the sample)."""
    key = shape(rec)
    if key in _checked:
        return
    found = problems(rec)
    assert [] == found, rec
    _checked.add(key)
