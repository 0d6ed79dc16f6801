"""Dataclasses of the call path whose ``__init__`` is written out (gateway.compiled).

mypyc compiles a dataclass's methods but hands the class to ``@dataclass`` at
import, whose generated ``__init__`` runs as Python. The classes made many times
per call write their ``__init__`` out instead, so it is compiled; ``@dataclass``
keeps a method the class defines. These tests hold each written ``__init__`` to
what ``@dataclass`` would have made: the same parameters in the same order, the
same defaults, a fresh container for a field with a default factory.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import inspect
import pickle
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


def _source_fields(cls: type) -> tuple[dataclasses.Field[object], ...]:
    """The fields with their annotations as written (the compiled class's hold types)."""
    return dataclasses.fields(getattr(_source_module(cls.__module__), cls.__name__))


def _value_for(field: dataclasses.Field[object], index: int) -> object:
    """A value of the field's type, different for every field of a class."""
    tag = f"{field.name}-{index}"
    by_type: dict[str, object] = {
        "str": tag,
        "str | None": tag,
        "int": index + 1,
        "int | None": index + 1,
        "SipUri": SipUri("sip", tag, None, "example.com", None),
        "Origin": Origin(tag, "1", 1, "IN", "IP4", "192.0.2.1"),
        "Connection | None": Connection(f"192.0.2.{index}"),
        "dict[str, str | None]": {tag: None},
        "dict[str, str]": {tag: tag},
        "list[str]": [tag],
        "list[tuple[str, str | None]]": [(tag, None)],
        "list[tuple[str, str]]": [(tag[0], tag)],
        "list[MediaDescription]": [MediaDescription(tag, 4000, None, "RTP/AVP", ["0"])],
    }
    return by_type[str(field.type)]


def _arguments(cls: type, fields: list[dataclasses.Field[object]]) -> tuple[list, dict]:
    positional: list[object] = []
    keywords: dict[str, object] = {}
    for index, field in enumerate(fields):
        value = _value_for(field, index)
        if field.kw_only:
            keywords[field.name] = value
        else:
            positional.append(value)
    return positional, keywords


def _required(cls: type) -> list[dataclasses.Field[object]]:
    return [
        field
        for field in _source_fields(cls)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_every_argument_lands_in_its_field(cls: type) -> None:
    fields = list(_source_fields(cls))
    positional, keywords = _arguments(cls, fields)
    made = cls(*positional, **keywords)
    for index, field in enumerate(fields):
        assert getattr(made, field.name) == _value_for(field, index), field.name


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_copies_and_pickles_as_the_sources_do(cls: type) -> None:
    """``copy`` and ``pickle`` make the object without calling ``__init__``."""
    positional, keywords = _arguments(cls, list(_source_fields(cls)))
    made = cls(*positional, **keywords)
    assert copy.copy(made) == made
    assert copy.deepcopy(made) == made
    assert pickle.loads(pickle.dumps(made)) == made


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__name__)
def test_defaults_are_fresh_containers_as_a_factory_made_them(cls: type) -> None:
    positional, keywords = _arguments(cls, _required(cls))
    first, second = cls(*positional, **keywords), cls(*positional, **keywords)
    assert first == second
    for field in dataclasses.fields(cls):
        if field.default_factory is not dataclasses.MISSING:
            made = field.default_factory()
            assert getattr(first, field.name) == made, field.name
            assert getattr(first, field.name) is not getattr(second, field.name), field.name
