"""The OpenAPI document describes exactly what is served."""

from __future__ import annotations

import re

from gateway.api.openapi import document
from tests.unit.api.conftest import Api


def _served(api: Api) -> set[tuple[str, str]]:
    found = set()
    for route in api.server.app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        found.add((route.method.lower(), path))
    return found


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in document()["paths"].items() for method in item}


async def test_every_served_route_is_documented_and_back(api: Api) -> None:
    assert _served(api) == _documented()


async def test_the_document_is_served_and_is_openapi_3_1(api: Api) -> None:
    status, body = await api.json("GET", "/openapi.json")
    assert status == 200 and body["openapi"] == "3.1.0"
    refs = set(re.findall(r'"#/components/(\w+)/(\w+)"', str(body).replace("'", '"')))
    for kind, name in refs:
        assert name in body["components"][kind], name


async def test_a_call_in_a_listing_has_the_documented_fields(api: Api) -> None:
    from tests.unit.store.records import start

    await api.write(start())
    _, page = await api.json("GET", "/v1/calls")
    schema = document()["components"]["schemas"]["Call"]
    assert set(page["calls"][0]) == set(schema["properties"]) == set(schema["required"])
