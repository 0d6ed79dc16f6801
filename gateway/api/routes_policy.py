"""``/v1/policy``: the tenant's consent policy, read and replaced (a new version).

GET gives the document in force, its version (the one call records name)
and its revision (0: the settings file's; n: the n-th set through the API)
with ``ETag: "rev-n"``. PUT validates a whole document as the settings
file's ``[tenants.consent]`` is validated and makes it the next revision;
``If-Match`` with the ETag refuses the PUT (412) when someone else changed
the policy since it was read. Calls in progress keep the version they
started with; this instance uses the new one for its next call at once,
other instances within ``api.policy_poll_s``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from gateway.api.auth import IDENTITY, VIEW, admin_only
from gateway.api.bodies import json_body
from gateway.api.context import context_of
from gateway.api.params import QueryParams
from gateway.api.problems import ApiProblem, bad_request, json_response
from gateway.calls.policy_documents import (
    PolicyDocumentError,
    check_policy_document,
    policy_document,
)
from gateway.consent.policy import build_policy
from gateway.store.policies import ConflictingRevision, add_policy, latest_policies


async def _current(request: web.Request) -> dict[str, Any]:
    context = context_of(request)
    tenant = request[VIEW].tenant
    try:
        tenant_settings = context.settings.tenant_named(tenant)
    except KeyError:
        raise ApiProblem(
            404, "not-found", f"tenant {tenant!r} is not configured on this gateway"
        ) from None
    stored = (await latest_policies(context.engine)).get(tenant)
    if stored is not None:
        return {
            "tenant": tenant,
            "revision": stored["revision"],
            "version": stored["version"],
            "source": "api",
            "updated_at": stored["created_at"],
            "policy": stored["policy"],
        }
    policy = await asyncio.to_thread(
        build_policy, tenant_settings, context.settings.consent_rules(), context.settings.config_dir
    )
    return {
        "tenant": tenant,
        "revision": 0,
        "version": policy.version,
        "source": "config",
        "updated_at": None,
        "policy": policy_document(tenant_settings.consent),
    }


ETAG_PATTERN = re.compile(r'\*|"rev-[0-9]+"')


def _etag(revision: int) -> str:
    return f'"rev-{revision}"'


async def get_policy(request: web.Request) -> web.Response:
    QueryParams(request.query, ())
    current = await _current(request)
    return json_response(current, headers={"ETag": _etag(current["revision"])})


@admin_only
async def put_policy(request: web.Request) -> web.Response:
    QueryParams(request.query, ())
    document = await json_body(request)
    context = context_of(request)
    view = request[VIEW]
    current = await _current(request)
    expected = None
    if_match = request.headers.get("If-Match")
    if if_match is not None and not ETAG_PATTERN.fullmatch(if_match.strip()):
        raise bad_request('If-Match must be * or an ETag this API gave out, such as "rev-3"')
    if if_match is not None and if_match.strip() != "*":
        if if_match.strip() != _etag(current["revision"]):
            raise ApiProblem(
                412,
                "policy-changed",
                f"the policy is at {_etag(current['revision'])}, not {if_match.strip()}: "
                "read it again",
            )
        expected = current["revision"]
    try:
        consent, policy, notices = await asyncio.to_thread(
            check_policy_document, context.settings, view.tenant, document
        )
    except PolicyDocumentError as error:
        raise ApiProblem(
            422,
            "invalid-policy",
            f"the policy was not changed: {error}",
            errors=[{"location": p.location, "message": p.message} for p in error.problems],
        ) from None
    stored_document = policy_document(consent)
    try:
        row = await add_policy(
            context.engine,
            view.tenant,
            policy.version,
            stored_document,
            request[IDENTITY].key_id,
            expected_revision=expected,
        )
    except ConflictingRevision as conflict:
        raise ApiProblem(412, "policy-changed", f"{conflict}; read it again and retry") from None
    if context.live is not None:
        context.live.consent.install(view.tenant, policy, notices, row["revision"])
    body = {
        "tenant": view.tenant,
        "revision": row["revision"],
        "version": policy.version,
        "source": "api",
        "updated_at": row["created_at"],
        "policy": stored_document,
    }
    return json_response(body, headers={"ETag": _etag(row["revision"])})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/policy", get_policy, name="policy")
    app.router.add_put("/v1/policy", put_policy, name="policy_put")
