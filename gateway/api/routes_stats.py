"""``/v1/stats``: calls, answer rate, durations and consent outcomes per hour, day or week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.api.auth import VIEW
from gateway.api.params import QueryParams
from gateway.api.problems import bad_request, json_response
from gateway.store.stats import Bucket, totals

BUCKET_SPAN = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
MAX_BUCKETS = 5000
DEFAULT_RANGE = timedelta(days=7)


async def stats(request: web.Request) -> web.Response:
    """Per bucket and in total over [from, to): default the last 7 days by day."""
    params = QueryParams(request.query, ("from", "to", "bucket"))
    until = params.instant("to") or datetime.now(UTC)
    since = params.instant("from") or until - DEFAULT_RANGE
    if since >= until:
        raise bad_request("from must be before to")
    bucket: Bucket = params.choice("bucket", BUCKET_SPAN) or "day"  # type: ignore[assignment]
    if (until - since) / BUCKET_SPAN[bucket] > MAX_BUCKETS:
        raise bad_request(f"that range holds more than {MAX_BUCKETS} {bucket}s: use a wider bucket")
    rows = await request[VIEW].stats(since.astimezone(UTC), until.astimezone(UTC), bucket)
    return json_response(
        {
            "from": since.astimezone(UTC).isoformat(),
            "to": until.astimezone(UTC).isoformat(),
            "bucket": bucket,
            "totals": totals(rows),
            "buckets": rows,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/stats", stats, name="stats")
