"""Media inactivity: last_activity, idle_for and the idle watcher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from gateway.media.relay import MediaRelay, MediaSession, watch_idle
from tests.unit.media.udp_phone import Phone, rtcp_rr, rtp, wait_until


async def test_idle_for_counts_from_creation_then_from_the_last_rtp(
    relay: MediaRelay, phones: Callable[..., Phone]
) -> None:
    before = time.monotonic()
    session = await relay.create_session("idle")
    assert before <= session.last_activity <= time.monotonic()
    assert session.idle_for(session.last_activity + 30.0) == pytest.approx(30.0)

    a, b = phones(), phones()
    session.set_remote("a", 0, "127.0.0.1", a.port, None, False)
    session.set_remote("b", 0, "127.0.0.1", b.port, None, True)
    created = session.last_activity
    a.send(session.local_ports("a")[0][0], rtp(1))
    await b.recv()
    assert session.last_activity > created
    assert session.last_activity == session.streams[0].a.stats.last_packet_at

    last = session.last_activity
    a.send(session.local_ports("a")[0][0], rtcp_rr())  # RTCP is not media activity
    await b.recv()
    assert session.last_activity == last


async def test_watcher_reports_each_idle_episode_once(relay: MediaRelay) -> None:
    quiet = await relay.create_session("quiet")
    busy = await relay.create_session("busy")
    busy_stats = busy.streams[0].b.stats
    now = max(quiet.created_at, busy.created_at)
    reported: list[MediaSession] = []
    task = asyncio.ensure_future(
        watch_idle(relay, 5.0, reported.append, interval=0.001, clock=lambda: now)
    )

    async def at(time_s: float) -> None:
        nonlocal now
        now = time_s
        await asyncio.sleep(0.01)  # several watcher rounds

    busy_stats.last_packet_at = now + 4.0
    await at(now + 6.0)
    assert reported == [quiet]
    await at(now + 2.0)
    assert reported == [quiet]  # still idle: not reported again
    await at(now + 4.0)  # 12 s after creation, 8 s after busy's last packet
    assert reported == [quiet, busy]

    busy_stats.last_packet_at = now  # talking again...
    await at(now + 1.0)
    assert reported == [quiet, busy]
    await at(now + 5.0)  # ...and silent again: a new idle episode
    assert reported == [quiet, busy, busy]
    task.cancel()


async def test_start_idle_watch_reports_a_silent_session(relay: MediaRelay) -> None:
    session = await relay.create_session("silent")
    reported: list[MediaSession] = []
    relay.start_idle_watch(0.05, reported.append, interval=0.01)
    await wait_until(lambda: reported == [session])


async def test_watch_idle_refuses_nonsense_arguments(relay: MediaRelay) -> None:
    with pytest.raises(ValueError, match="positive"):
        await watch_idle(relay, 0, lambda session: None)


async def test_relay_close_stops_the_watcher(relay: MediaRelay) -> None:
    task = relay.start_idle_watch(10.0, lambda session: None)
    await relay.close()
    assert task.done()
