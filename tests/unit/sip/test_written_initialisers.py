"""Dataclasses of the call path whose ``__init__`` is written out (gateway.compiled).

mypyc compiles a dataclass's methods but hands the class to ``@dataclass`` at
import, whose generated ``__init__`` runs as Python. The classes made many times
per call write their ``__init__`` out instead, so it is compiled; ``@dataclass``
keeps a method the class defines. These tests hold each written ``__init__`` to
what ``@dataclass`` would have made: the same parameters in the same order, the
same defaults, a fresh container for a field with a default factory.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import sys
import types

import pytest

from gateway.compiled import source_path
from gateway.sip.headers import CSeq, Via
from gateway.sip.sdp import Connection, MediaDescription, Origin, SessionDescription
from gateway.sip.uri import NameAddr, SipUri

WRITTEN_OUT = (
    SipUri,
    NameAddr,
    Via,
    CSeq,
    Origin,
    Connection,
    MediaDescription,
    SessionDescription,
)


@functools.cache
def _source_module(name: str) -> types.ModuleType:
    """The module run from its ``.py`` file under a name of its own: the same classes as
    Python whatever the build, to read their ``__init__`` and what ``@dataclass`` saw."""
    spec = importlib.util.spec_from_file_location(f"_source_of_{name}", source_path(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # @dataclass looks its class's module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_the_parameters_are_the_fields_in_order_with_their_defaults(cls: type) -> None:
    source_class = getattr(_source_module(cls.__module__), cls.__name__)
    init = source_class.__init__
    assert init.__code__.co_filename == str(source_path(cls.__module__)), "not written out"
    parameters = list(inspect.signature(init).parameters.values())[1:]
    fields = [field for field in dataclasses.fields(source_class) if field.init]
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        assert (parameter.kind is inspect.Parameter.KEYWORD_ONLY) == field.kw_only, field.name
        if field.default is not dataclasses.MISSING:
            assert parameter.default == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert parameter.default is None, f"{field.name}: None stands for a fresh one"
        else:
            assert parameter.default is inspect.Parameter.empty, field.name


def _minimal_arguments(cls: type) -> tuple[list[object], dict[str, object]]:
    samples: dict[str, object] = {
        "uri": SipUri("sip", "alice", None, "example.com", None),
        "origin": Origin("-", "1", 1, "IN", "IP4", "192.0.2.1"),
        "formats": ["0"],
    }
    by_type: dict[str, object] = {"str": "x", "int": 1, "str | None": None, "int | None": None}
    positional: list[object] = []
    keywords: dict[str, object] = {}
    source_class = getattr(_source_module(cls.__module__), cls.__name__)
    for field in dataclasses.fields(source_class):  # annotations as written
        if field.default is not dataclasses.MISSING:
            continue
        if field.default_factory is not dataclasses.MISSING:
            continue
        value = samples[field.name] if field.name in samples else by_type[str(field.type)]
        if field.kw_only:
            keywords[field.name] = value
        else:
            positional.append(value)
    return positional, keywords


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_defaults_are_fresh_containers_as_a_factory_made_them(cls: type) -> None:
    positional, keywords = _minimal_arguments(cls)
    first, second = cls(*positional, **keywords), cls(*positional, **keywords)
    assert first == second
    for field in dataclasses.fields(cls):
        if field.default_factory is not dataclasses.MISSING:
            made = field.default_factory()
            assert getattr(first, field.name) == made, field.name
            assert getattr(first, field.name) is not getattr(second, field.name), field.name
