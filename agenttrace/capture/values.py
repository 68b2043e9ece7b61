"""The value codec: a tool's arguments and results as JSON, round-tripping exactly.

JSON types stay as they are; everything else becomes an object tagged by its first key
(``$tuple``, ``$bytes``...): tuple and namedtuple, bytes, bytearray, set, frozenset,
datetime/date/time/timedelta, Decimal, UUID, enums, dataclasses, pydantic models (and dicts whose
keys are not plain strings, or start with ``$``). Anything else goes
through the tool's own ``encode=`` callable, or is an :class:`UnencodableValue`.

Never pickle: loading a trace must never run code. Decoding a dataclass, a pydantic model or an
enum looks its class up by module and qualified name among modules *already imported* (the
agent's own), and a dataclass is rebuilt field by field without calling its ``__init__``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any

Encoder = Callable[[Any], Any]

_TAG = "$"  # a dict key starting with this is a tag; a user dict with such keys is escaped


class UnencodableValue(TypeError):
    """A value the codec cannot record; the message names its type and the fix."""


def encode(value: Any, custom: Encoder | None = None) -> Any:
    """``value`` as JSON (tagged where JSON has no such type)."""
    return _encode(value, custom, 0)


def _encode(value: Any, custom: Encoder | None, depth: int) -> Any:
    if depth > 200:
        raise UnencodableValue("a value nested more than 200 levels deep (a cycle?)")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return value if type(value) is int else {"$int": _class_name(type(value)), "v": int(value)}
    if type(value) is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    down = depth + 1
    if type(value) is list:
        return [_encode(v, custom, down) for v in value]
    if type(value) is dict:
        if all(type(k) is str and not k.startswith(_TAG) for k in value):
            return {k: _encode(v, custom, down) for k, v in value.items()}
        return {
            "$dict": [
                [_encode(k, custom, down), _encode(v, custom, down)] for k, v in value.items()
            ]
        }
    if type(value) is tuple:
        return {"$tuple": [_encode(v, custom, down) for v in value]}
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):  # a namedtuple
        return {
            "$namedtuple": _class_name(type(value)),
            "v": [_encode(v, custom, down) for v in value],
        }
    if isinstance(value, (bytes, bytearray)):
        tag = "$bytes" if type(value) is bytes else "$bytearray"
        return {tag: base64.b64encode(value).decode("ascii")}
    if type(value) in (set, frozenset):
        items = [_encode(v, custom, down) for v in value]
        items.sort(key=_canonical)  # a set's order is not part of it (PYTHONHASHSEED)
        return {"$set" if type(value) is set else "$frozenset": items}
    special = _special(value)
    if special is not None:
        return special
    if isinstance(value, enum.Enum):
        return {"$enum": _class_name(type(value)), "v": _encode(value.value, custom, down)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _encode(getattr(value, f.name), custom, down) for f in dataclasses.fields(value)
        }
        return {"$dataclass": _class_name(type(value)), "fields": fields}
    if _is_pydantic(value):
        data = {
            name: _encode(getattr(value, name), custom, down) for name in type(value).model_fields
        }
        unset = sorted(set(data) - set(value.model_fields_set))
        return {"$pydantic": _class_name(type(value)), "fields": data, "unset": unset}
    if custom is not None:
        return {"$custom": _encode(custom(value), None, down)}
    raise UnencodableValue(
        f"a {type(value).__module__}.{type(value).__qualname__} cannot be recorded; pass "
        "encode= and decode= to agenttrace.tool (or return JSON types, dataclasses or "
        "pydantic models)"
    )


def _special(value: Any) -> dict[str, Any] | None:
    # datetime before date: a datetime is a date
    if type(value) is dt.datetime:
        return {"$datetime": value.isoformat()}
    if type(value) is dt.date:
        return {"$date": value.isoformat()}
    if type(value) is dt.time:
        return {"$time": value.isoformat()}
    if type(value) is dt.timedelta:
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if type(value) is decimal.Decimal:
        return {"$decimal": str(value)}
    if type(value) is uuid.UUID:
        return {"$uuid": str(value)}
    return None


def decode(value: Any, custom: Encoder | None = None) -> Any:
    """The value ``encode`` stood for."""
    if isinstance(value, list):
        return [decode(v, custom) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) >= 1:
        tag = next(iter(value))
        if tag.startswith(_TAG):
            return _decode_tagged(tag, value, custom)
    return {k: decode(v, custom) for k, v in value.items()}


def _decode_tagged(tag: str, value: dict[str, Any], custom: Encoder | None) -> Any:
    body = value[tag]
    if tag == "$tuple":
        return tuple(decode(v, custom) for v in body)
    if tag == "$dict":
        return {decode(k, custom): decode(v, custom) for k, v in body}
    if tag in ("$bytes", "$bytearray"):
        data = base64.b64decode(body)
        return data if tag == "$bytes" else bytearray(data)
    if tag in ("$set", "$frozenset"):
        items = [decode(v, custom) for v in body]
        return set(items) if tag == "$set" else frozenset(items)
    if tag == "$float":
        return float(body)
    if tag == "$datetime":
        return dt.datetime.fromisoformat(body)
    if tag == "$date":
        return dt.date.fromisoformat(body)
    if tag == "$time":
        return dt.time.fromisoformat(body)
    if tag == "$timedelta":
        return dt.timedelta(days=body[0], seconds=body[1], microseconds=body[2])
    if tag == "$decimal":
        return decimal.Decimal(body)
    if tag == "$uuid":
        return uuid.UUID(body)
    if tag == "$namedtuple":
        return _imported_class(body)(*(decode(v, custom) for v in value["v"]))
    if tag in ("$int", "$enum"):
        return _imported_class(body)(decode(value["v"], custom))
    if tag == "$dataclass":
        cls = _imported_class(body)
        obj = object.__new__(cls)  # no __init__/__post_init__: the recorded fields are the value
        for name, field_value in value["fields"].items():
            object.__setattr__(obj, name, decode(field_value, custom))
        return obj
    if tag == "$pydantic":
        fields = {k: decode(v, custom) for k, v in value["fields"].items()}
        explicitly_set = set(fields) - set(value.get("unset") or ())
        return _imported_class(body).model_construct(_fields_set=explicitly_set, **fields)
    if tag == "$custom":
        if custom is None:
            raise UnencodableValue(
                "the recording holds a value made by the tool's encode=; pass decode= too"
            )
        return custom(decode(body))
    raise UnencodableValue(f"unknown tag {tag!r} in a recorded value")


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _imported_class(name: str) -> type:
    """A class by ``module:qualname``, from a module already imported (never importing one)."""
    module_name, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None) if found is not None else None
    if not isinstance(found, type):
        raise UnencodableValue(
            f"the recording holds a {name.replace(':', '.')}, and no such class is loaded; "
            "import its module before the tool is replayed"
        )
    return found


def _is_pydantic(value: Any) -> bool:
    fields = getattr(type(value), "model_fields", None)
    return isinstance(fields, dict) and hasattr(type(value), "model_construct")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str:
    """An encoded value as one canonical string (the replay key of a tool's arguments)."""
    return _canonical(value)
