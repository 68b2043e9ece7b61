"""Where two JSON values differ, as paths (``body.messages[1].content``).

Shared by the replay engine (what a diverging request changed) and ``agenttrace diff``; each
words the differences its own way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # the side of a Difference where an object key is absent


@dataclass(frozen=True)
class Difference:
    path: str
    a: Any  # MISSING when the key is only in b
    b: Any  # MISSING when the key is only in a
    lengths: bool = False  # a and b are the lengths of two lists at path


def differences(a: Any, b: Any, path: str) -> Iterator[Difference]:
    """Every difference between ``a`` and ``b``, depth first, object keys sorted; lists are
    compared item by item (and their lengths, when they differ)."""
    if type(a) is not type(b):
        yield Difference(path, a, b)
    elif isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a:
                yield Difference(f"{path}.{key}", MISSING, b[key])
            elif key not in b:
                yield Difference(f"{path}.{key}", a[key], MISSING)
            else:
                yield from differences(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        if len(a) != len(b):
            yield Difference(path, len(a), len(b), lengths=True)
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield Difference(path, a, b)


def short(value: Any, limit: int = 60) -> str:
    """A value as JSON, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "…"
