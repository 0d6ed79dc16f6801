"""The OpenAPI 3.1 document of the API, served at ``/openapi.json``.

Record schemas are made from the store's tables (a column's type and
nullability become its JSON Schema), so the document cannot drift from what
the handlers return; the test suite also checks every served route is in it
and runs schemathesis against it over real HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import JSON, Table

from gateway.api.problems import json_response
from gateway.config import VERSION
from gateway.store.listing_rows import LIST_EXCLUDED
from gateway.store.models import (
    ANALYSES,
    ANALYSIS_JOBS,
    CALLS,
    CONSENT_EVENTS,
    CONSENT_OUTCOMES,
    DIRECTIONS,
    DISPOSITIONS,
    RECORDINGS,
    REDACTIONS,
    TRANSCRIPTS,
)

PROBLEM = {"$ref": "#/components/responses/Problem"}


def _column_schema(column: Any) -> dict[str, Any]:
    if isinstance(column.type, JSON):
        schema: dict[str, Any] = {}
    else:
        python_type = column.type.python_type
        if python_type is datetime:
            schema = {"type": "string", "format": "date-time"}
        elif python_type is int:
            schema = {"type": "integer"}
        elif python_type is float:
            schema = {"type": "number"}
        else:
            schema = {"type": "string"}
        if column.nullable:
            schema = {
                "type": [schema["type"], "null"],
                **{k: v for k, v in schema.items() if k != "type"},
            }
    return schema


def table_schema(table: Table, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    columns = [column for column in table.c if column.name not in leave_out]
    return {
        "type": "object",
        "properties": {column.name: _column_schema(column) for column in columns},
        "required": [column.name for column in columns],
    }


def _problem_responses(*statuses: int) -> dict[str, Any]:
    return {str(status): PROBLEM for status in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


SUBJECT_NUMBER = (
    "E.164, or national in the tenant's region; digits that are no valid number (an "
    "extension, a short code) are looked for in the parties' URIs"
)


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
    }


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}


def _list_of(enum: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^({'|'.join(enum)})(,({'|'.join(enum)}))*$"}


INSTANT = {"type": "string", "format": "date-time"}


def document() -> dict[str, Any]:
    recording = table_schema(RECORDINGS, ("path",))
    recording["properties"]["href"] = {"type": "string"}
    recording["required"] = [*recording["required"], "href"]
    call_detail = table_schema(CALLS)
    call_detail["properties"]["consent_events"] = {
        "type": "array",
        "items": table_schema(CONSENT_EVENTS),
    }
    call_detail["properties"]["recordings"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Recording"},
    }
    call_detail["properties"]["analysis"] = {
        "type": "array",
        "items": table_schema(
            ANALYSIS_JOBS,
            (
                "id",
                "call_record_id",
                "tenant",
                "not_before",
                "claimed_by",
                "claimed_at",
                "created_at",
            ),
        ),
    }
    call_detail["required"] += ["consent_events", "recordings", "analysis"]
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    stat_numbers = {
        "calls": {"type": "integer"},
        "answered": {"type": "integer"},
        "answer_rate": {"type": "number"},
        "duration_s": {"type": "number"},
        "billable_s": {"type": "number"},
        "mean_billable_s": {"type": "number"},
        "consent": counts,
    }
    filters = [
        _query("from", INSTANT, "calls that started at or after this instant (RFC 3339)"),
        _query("to", INSTANT, "calls that started before this instant (RFC 3339)"),
        _query(
            "number",
            {"type": "string", "minLength": 1, "maxLength": 40},
            "either party's number, E.164 or as dialled in the tenant's region",
        ),
        _query("direction", {"type": "string", "enum": list(DIRECTIONS)}, "inbound or outbound"),
        _query("disposition", _list_of(DISPOSITIONS), "comma-separated dispositions"),
        _query("consent", _list_of(CONSENT_OUTCOMES), "comma-separated consent outcomes"),
        _query("min_duration", {"type": "number", "minimum": 0}, "seconds, at least"),
        _query("order", {"type": "string", "enum": ["desc", "asc"]}, "by start time"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "rows per page"),
        _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
        _query(
            "format",
            {"type": "string", "enum": ["json", "csv"]},
            "csv streams every matching call (or send Accept: text/csv)",
        ),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callgate API",
            "version": VERSION,
            "description": (
                "Call metadata, consent trails, stats, consent policy and data-subject "
                "requests of one tenant: the tenant of the bearer key. Errors are RFC 9457 "
                "problem details."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/calls": {
                "get": {
                    "operationId": "listCalls",
                    "summary": "Calls, newest first, filtered",
                    "parameters": filters,
                    "responses": {
                        "200": {
                            "description": "a page of calls (or CSV)",
                            "content": {
                                **_json("CallPage"),
                                "text/csv": {"schema": {"type": "string"}},
                            },
                            "links": {
                                operation: {
                                    "operationId": operation,
                                    "parameters": {"call_id": "$response.body#/calls/0/id"},
                                }
                                for operation in (
                                    "getCall",
                                    "getRecording",
                                    "getTranscript",
                                    "getCues",
                                    "controlCapture",
                                )
                            },
                        },
                        **_problem_responses(400, 401, 503),
                    },
                }
            },
            "/v1/calls/{call_id}": {
                "get": {
                    "operationId": "getCall",
                    "summary": "One call with its consent trail",
                    "parameters": [_path("call_id", "the call record's id")],
                    "responses": {
                        "200": {"description": "the call", "content": _json("CallDetail")},
                        **_problem_responses(400, 401, 404),
                    },
                }
            },
            "/v1/calls/{call_id}/capture": {
                "post": {
                    "operationId": "controlCapture",
                    "summary": "Pause, resume or stop capture on a live call",
                    "parameters": [_path("call_id", "the call record's id")],
                    "requestBody": {"required": True, "content": _json("CaptureRequest")},
                    "responses": {
                        "200": {"description": "applied", "content": _json("CaptureResult")},
                        **_problem_responses(400, 401, 403, 404, 409, 413, 415, 503),
                    },
                }
            },
            "/v1/calls/{call_id}/recording": {
                "get": {
                    "operationId": "getRecording",
                    "summary": "The call's recording (WAV)",
                    "parameters": [
                        _path("call_id", "the call record's id"),
                        _query(
                            "id",
                            {"type": "string", "minLength": 1},
                            "one recording's id, when the call has several",
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "WAV",
                            "content": {
                                "audio/wav": {"schema": {"type": "string", "format": "binary"}}
                            },
                        },
                        "206": {
                            "description": (
                                "a range of the WAV (a Range header; with If-Range, only while "
                                "it names the current ETag)"
                            ),
                            "content": {
                                "audio/wav": {"schema": {"type": "string", "format": "binary"}}
                            },
                        },
                        "304": {"description": "unchanged since the ETag in If-None-Match"},
                        **_problem_responses(400, 401, 404, 409, 410, 416, 503),
                    },
                }
            },
            "/v1/calls/{call_id}/transcript": {
                "get": {
                    "operationId": "getTranscript",
                    "summary": "The call's redacted transcript per party, and the spans removed",
                    "parameters": [_path("call_id", "the call record's id")],
                    "responses": {
                        "200": {"description": "transcript", "content": _json("Transcript")},
                        **_problem_responses(400, 401, 404),
                    },
                }
            },
            "/v1/calls/{call_id}/cues": {
                "get": {
                    "operationId": "getCues",
                    "summary": "Talk-time cues of the call's analysed recordings",
                    "parameters": [_path("call_id", "the call record's id")],
                    "responses": {
                        "200": {"description": "cues", "content": _json("Cues")},
                        **_problem_responses(400, 401, 404),
                    },
                }
            },
            "/v1/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Calls, answer rate, durations, consent",
                    "parameters": [
                        _query("from", INSTANT, "start of the range (default: to less 7 days)"),
                        _query("to", INSTANT, "end of the range (default: now)"),
                        _query(
                            "bucket",
                            {"type": "string", "enum": ["hour", "day", "week"]},
                            "bucket size (default day)",
                        ),
                    ],
                    "responses": {
                        "200": {"description": "stats", "content": _json("Stats")},
                        **_problem_responses(400, 401, 503),
                    },
                }
            },
            "/v1/policy": {
                "get": {
                    "operationId": "getPolicy",
                    "summary": "The consent policy in force",
                    "responses": {
                        "200": {"description": "policy", "content": _json("Policy")},
                        **_problem_responses(401, 404),
                    },
                },
                "put": {
                    "operationId": "putPolicy",
                    "summary": "Replace the policy (new version)",
                    "parameters": [
                        {
                            "name": "If-Match",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": '^(\\*|"rev-[0-9]+")$'},
                        }
                    ],
                    "requestBody": {"required": True, "content": _json("PolicyDocument")},
                    "responses": {
                        "200": {"description": "the new policy", "content": _json("Policy")},
                        **_problem_responses(400, 401, 403, 404, 412, 413, 415, 422),
                    },
                },
            },
            "/v1/subjects/{number}/export": {
                "get": {
                    "operationId": "exportSubject",
                    "summary": "Everything held about a number (GDPR art. 15)",
                    "parameters": [_path("number", SUBJECT_NUMBER)],
                    "responses": {
                        "200": {"description": "export", "content": _json("SubjectExport")},
                        **_problem_responses(400, 401, 403),
                    },
                }
            },
            "/v1/subjects/{number}": {
                "delete": {
                    "operationId": "eraseSubject",
                    "summary": "Erase a number: recordings deleted, number hashed",
                    "parameters": [_path("number", SUBJECT_NUMBER)],
                    "responses": {
                        "200": {"description": "erased", "content": _json("Erasure")},
                        **_problem_responses(400, 401, 403),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": {"description": "alive", "content": _json("Health")}},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "security": [],
                    "responses": {
                        "200": {"description": "ready", "content": _json("Ready")},
                        "503": {"description": "not ready", "content": _json("Ready")},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "this document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "callgate keys create",
                }
            },
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "Call": table_schema(CALLS, LIST_EXCLUDED),
                "CallPage": {
                    "type": "object",
                    "required": ["calls", "next_cursor", "next"],
                    "properties": {
                        "calls": {"type": "array", "items": {"$ref": "#/components/schemas/Call"}},
                        "next_cursor": {"type": ["string", "null"]},
                        "next": {"type": ["string", "null"]},
                    },
                },
                "Recording": recording,
                "CallDetail": call_detail,
                "CaptureRequest": {
                    "type": "object",
                    "required": ["action"],
                    "additionalProperties": False,
                    "properties": {
                        "action": {"type": "string", "enum": ["pause", "resume", "stop"]}
                    },
                },
                "CaptureResult": {
                    "type": "object",
                    "required": ["call", "action", "applied"],
                    "properties": {
                        "call": {"type": "string"},
                        "action": {"type": "string"},
                        "applied": {"type": "boolean"},
                    },
                },
                "StatsRow": {
                    "type": "object",
                    "required": ["bucket", *stat_numbers],
                    "properties": {"bucket": {"type": "string"}, **stat_numbers},
                },
                "Stats": {
                    "type": "object",
                    "required": ["from", "to", "bucket", "totals", "buckets"],
                    "properties": {
                        "from": INSTANT,
                        "to": INSTANT,
                        "bucket": {"type": "string"},
                        "totals": {
                            "type": "object",
                            "required": [*stat_numbers],
                            "properties": stat_numbers,
                        },
                        "buckets": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/StatsRow"},
                        },
                    },
                },
                "PolicyDocument": {
                    "type": "object",
                    "description": "the keys of the settings file's [tenants.consent]",
                    "properties": {
                        "home": {
                            "type": ["string", "null"],
                            "pattern": "^[A-Z]{2}(-[A-Z0-9]{1,3})?$",
                        },
                        "notice_timing": {"type": "string", "enum": ["answer", "early"]},
                        "consent_timeout_s": {"type": "number", "exclusiveMinimum": 0},
                        "on_timeout": {"type": "string", "enum": ["continue", "hangup"]},
                        "minimum_mode": {
                            "type": "string",
                            "enum": ["notice", "opt_out", "opt_in", "none"],
                        },
                        "minimum_parties": {"type": "string", "enum": ["one", "all"]},
                        "default_language": {
                            "type": "string",
                            "pattern": "^[a-z]{2,3}(-[A-Z]{2})?$",
                        },
                        "overrides": {"type": "object"},
                        "digits": {"type": "object"},
                        "languages": {"type": "object"},
                        "notices": {"type": "object"},
                        "beep": {"type": "object"},
                    },
                },
                "Policy": {
                    "type": "object",
                    "required": ["tenant", "revision", "version", "source", "updated_at", "policy"],
                    "properties": {
                        "tenant": {"type": "string"},
                        "revision": {"type": "integer"},
                        "version": {"type": "string"},
                        "source": {"type": "string", "enum": ["config", "api"]},
                        "updated_at": {"type": ["string", "null"]},
                        "policy": {"$ref": "#/components/schemas/PolicyDocument"},
                    },
                },
                "SubjectExport": {
                    "type": "object",
                    "required": ["number", "calls", "transcripts"],
                    "properties": {
                        "number": {"type": "string"},
                        "calls": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/CallDetail"},
                        },
                        "transcripts": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["call", "party", "href"],
                                "properties": {
                                    "call": {"type": "string"},
                                    "party": {"type": "string"},
                                    "href": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Erasure": {
                    "type": "object",
                    "required": ["erased_as", "calls", "recordings", "files_removed"],
                    "properties": {
                        "erased_as": {"type": "string"},
                        "calls": {"type": "integer"},
                        "recordings": {"type": "integer"},
                        "files_removed": {"type": "integer"},
                    },
                },
                "Transcript": {
                    "type": "object",
                    "required": ["call", "transcripts", "redactions"],
                    "properties": {
                        "call": {"type": "string"},
                        "transcripts": {"type": "array", "items": table_schema(TRANSCRIPTS)},
                        "redactions": {"type": "array", "items": table_schema(REDACTIONS)},
                    },
                },
                "Cues": {
                    "type": "object",
                    "required": ["call", "analyses"],
                    "properties": {
                        "call": {"type": "string"},
                        "analyses": {"type": "array", "items": table_schema(ANALYSES)},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}},
                },
                "Ready": {
                    "type": "object",
                    "required": ["status", "checks"],
                    "properties": {
                        "status": {"type": "string"},
                        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[DOCUMENT])


DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


def add_routes(app: web.Application) -> None:
    app[DOCUMENT] = document()
    app.router.add_get("/openapi.json", openapi, name="openapi")
