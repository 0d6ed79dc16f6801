"""``copy`` and ``pickle`` of the dataclasses that write their ``__init__`` out.

Compiled by mypyc, such a class cannot be made without its ``__init__``, which is
how ``copy`` and ``pickle`` make objects by default (see :mod:`gateway.compiled`).
Their ``__reduce__`` hands them :func:`by_fields` instead: the object is made again
through ``__init__``, from its fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def rebuild(cls: Any, values: dict[str, Any]) -> Any:
    """The object of class ``cls`` with these field values."""
    return cls(**values)


def by_fields(item: Any) -> tuple[Any, tuple[Any, dict[str, Any]]]:
    """What a written-out dataclass's ``__reduce__`` returns: :func:`rebuild` and its
    arguments (``copy.deepcopy`` copies them, ``copy.copy`` shares them)."""
    values = {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}
    return rebuild, (type(item), values)
