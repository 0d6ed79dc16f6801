"""The gateway process: store, media relay, SIP stack and B2BUA, started and drained.

Start-up order: migrate the store and close the records a crashed run left
open (``gateway_restart``), start the batched record writer, bind the media
port range, bind SIP, then accept calls. SIGTERM drains: new calls get 503,
active calls may finish until ``drain_timeout_s``, then both legs get BYE,
and every record is written before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from datetime import UTC, datetime

from threadpoolctl import threadpool_limits

from gateway import compiled
from gateway.analysis.live import LiveAnalysis
from gateway.analysis.pipeline import AnalysisPipeline, tenant_keys
from gateway.api.server import ApiServer
from gateway.calls.b2bua import CallManager
from gateway.calls.consent_service import ConsentService
from gateway.collector_pauses import watch_collector
from gateway.config import Settings
from gateway.media.descriptors import media_descriptors, raise_open_files_limit
from gateway.media.relay import MediaRelay
from gateway.net.stack import SipStack
from gateway.net.transports import Address, ListenAddress
from gateway.sip.timers import TimerConfig
from gateway.store.engine import make_engine, migrate, refresh_statistics
from gateway.store.recovery import close_orphans
from gateway.store.writer import RecordWriter

log = logging.getLogger(__name__)


def _resolve_peers(settings: Settings) -> dict[tuple[str, int], Address]:
    """Resolve peer host names once at start-up (no DNS on the call path)."""
    resolved: dict[tuple[str, int], Address] = {}
    for tenant in settings.tenants:
        for peer in (tenant.pbx, tenant.trunk):
            key = (peer.host, peer.port)
            if key in resolved:
                continue
            infos = socket.getaddrinfo(peer.host, peer.port, type=socket.SOCK_DGRAM)
            address = infos[0][4]
            resolved[key] = (str(address[0]), int(address[1]))
    return resolved


class Gateway:
    """One running gateway instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.store.url)
        self.writer = RecordWriter(
            self.engine,
            batch_size=settings.store.batch_size,
            max_delay=settings.store.max_delay_s,
        )
        media = settings.media
        self.relay = MediaRelay(
            media.host,
            media.port_min,
            media.port_max,
            flow_sockets=media.flow_sockets,
            fastpath=media.fastpath,
            kernel_forwarding=media.kernel_forwarding,
            kernel_interfaces=tuple(media.kernel_interfaces),
        )
        sip = settings.sip
        self.stack = SipStack(
            listen=[ListenAddress(item.transport, item.host, item.port) for item in sip.listen],
            advertised_host=sip.advertised_host,
            user_agent=sip.user_agent,
            timers=TimerConfig(t1=sip.t1_s, t2=sip.t2_s, t4=sip.t4_s),
            max_message_bytes=sip.max_message_bytes,
        )
        self.consent = ConsentService(settings, self.writer)
        self.calls: CallManager | None = None
        self.recovered = 0
        self.api = ApiServer(settings, self.engine, live=self) if settings.api.enabled else None
        self.analysis = AnalysisPipeline(settings, self.engine)

    async def start(self) -> None:
        self._fit_open_files_limit()
        await migrate(self.engine)
        await refresh_statistics(self.engine)
        self.recovered = await close_orphans(
            self.engine, self.settings.instance_id, datetime.now(UTC)
        )
        if self.recovered:
            log.warning(
                "closed %d call records left open by a previous run as gateway_restart",
                self.recovered,
            )
        await self.writer.start()
        await self.consent.refresh(self.engine)  # policies set through the API stay in force
        peers = _resolve_peers(self.settings)
        await self.stack.start()
        self.calls = CallManager(
            settings=self.settings,
            stack=self.stack,
            relay=self.relay,
            writer=self.writer,
            peer_addresses=peers,
            consent=self.consent,
        )
        self.calls.start()
        if self.api is not None:
            await self.api.start()
        await self.analysis.start()
        self.consent.live = LiveAnalysis(self.engine, lambda: self.analysis.executor)
        _warn_unsealed(self.settings)
        for bound in self.stack.transports.bound:
            log.info("SIP listening on %s %s:%d", bound.transport, bound.host, bound.port)
        log.info("call path (SIP, calls, media): %s", compiled.STATE.describe())
        log.info(
            "media relay on %s ports %d-%d (flow sockets %s, native forwarder %s, "
            "kernel forwarder %s); "
            "store %s; instance %s",
            self.settings.media.host,
            self.settings.media.port_min,
            self.settings.media.port_max,
            "on" if self.relay.flow_sockets else "off",
            "on" if self.relay.native_engine is not None else "off",
            "on" if self.relay.kernel is not None else "off",
            self.engine.url.render_as_string(hide_password=True),
            self.settings.instance_id,
        )

    def _fit_open_files_limit(self) -> None:
        media = self.settings.media
        needed = media_descriptors(
            media.port_min, media.port_max, flow_sockets=self.relay.flow_sockets
        )
        limit = raise_open_files_limit(needed)
        if limit.after != limit.before:
            log.info("open files limit raised from %d to %d", limit.before, limit.after)
        if not limit.fits(needed):
            log.warning(
                "open files limited to %d (hard limit %d%s): the media port range %d-%d "
                "may need %d; calls past the limit are refused for want of ports",
                limit.after,
                limit.hard,
                f"; raising it was refused: {limit.refused}" if limit.refused else "",
                media.port_min,
                media.port_max,
                needed,
            )

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Drain calls, close sockets, write every record, release the store."""
        timeout = self.settings.drain_timeout_s if drain_timeout is None else drain_timeout
        if self.calls is not None:
            await self.calls.drain(timeout)
            await self.calls.close()
        await self.stack.close()
        await self.relay.close()
        if self.api is not None:
            await self.api.stop()
        if self.consent.live is not None:
            await self.consent.live.stop()
        await self.writer.stop()
        await self.analysis.stop()
        await self.engine.dispose()
        log.info("gateway stopped")

    # ------------------------------------------------------------ for the API

    def ready(self) -> tuple[bool, str]:
        """SIP is bound and new calls are accepted."""
        if self.calls is None or not self.stack.transports.bound:
            return False, "starting"
        if self.calls.draining:
            return False, "draining: new calls get 503"
        return True, "ok"

    def metrics(self) -> dict[str, float | dict[tuple[tuple[str, str], ...], float]]:
        calls = self.calls
        relay = self.relay.packet_totals()
        native_lanes, native_relayed = self.relay.native_totals()
        kernel_lanes, kernel_relayed = self.relay.kernel_totals()
        return {
            "callgate_active_calls": float(len(calls.calls)) if calls else 0.0,
            "callgate_calls_total": {
                (("disposition", name),): float(count)
                for name, count in sorted((calls.ended if calls else {}).items())
            },
            "callgate_consent_outcomes_total": {
                (("outcome", name),): float(count)
                for name, count in sorted((calls.consent_outcomes if calls else {}).items())
            },
            "callgate_relay_packets_total": {
                (("event", name),): float(count) for name, count in relay.items()
            },
            "callgate_relay_native_lanes": float(native_lanes),
            "callgate_relay_native_packets_total": float(native_relayed),
            "callgate_relay_kernel_lanes": float(kernel_lanes),
            "callgate_relay_kernel_packets_total": float(kernel_relayed),
            "callgate_calls_shed_total": float(calls.admission.shed) if calls else 0.0,
            "callgate_shed_share": calls.admission.shed_share if calls else 0.0,
            "callgate_loop_lag_seconds": calls.admission.last_lag_s if calls else 0.0,
            "callgate_loop_lag_max_seconds": calls.admission.max_lag_s if calls else 0.0,
            "callgate_sip_wait_max_seconds": self.stack.transports.max_receive_wait_s,
            "callgate_sip_send_drops_total": float(self.stack.transports.send_drops),
            "callgate_write_queue_depth": float(self.writer.pending),
            "callgate_write_queue_oldest_seconds": self.writer.oldest_wait(),
            "callgate_records_written_total": float(self.writer.written),
            "callgate_store_write_failures_total": float(self.writer.failures),
            "callgate_analysis_jobs_total": {
                (("result", "done"),): float(self.analysis.done),
                (("result", "failed"),): float(self.analysis.failed),
            },
        }


def _warn_unsealed(settings: Settings) -> None:
    for tenant in settings.tenants:
        if tenant.analysis.enabled and not tenant_keys(tenant)[0]:
            log.warning(
                "tenant %s: no sealing keys: analysed recordings are stored unencrypted "
                "(set [tenants.sealing] keys or keys_env)",
                tenant.name,
            )


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then drain and exit 0."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    gateway = Gateway(settings)
    await gateway.start()
    settle_for_serving()
    log.info("gateway ready")
    await stop.wait()
    log.info("stopping: draining calls for up to %.0f s", settings.drain_timeout_s)
    await gateway.stop()
    return 0


GC_THRESHOLDS = (1_000, 4, 500)
"""The cyclic collector's thresholds (:func:`gc.set_threshold`) in the gateway's process:
allocations less deallocations between collections of the youngest generation;
collections of one generation between collections of the next."""

API_GC_THRESHOLDS = (20_000, 10, 10)
"""The thresholds in a process that serves the API alone (``callgate api``): no call's
media waits on its event loop, and a page of 100 rows allocates a few thousand
objects, which collections every 1,000 allocations would walk while they are built: with
the gateway's thresholds one worker served 1,803-1,966 first pages a second, with these
2,212-2,585 (SQLite, 100,000 calls, ``bench_api --quick``, 2026-12-07)."""


def settle_for_serving(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """What the gateway's process does once it has loaded, before it serves calls.

    - NumPy's BLAS runs on one thread: the capture analysis runs on the
      event loop's core, and BLAS's own threads would spin on the other cores
      for products that small (and take them from the analysis workers and
      the database).
    - Everything loaded so far (modules, ORM metadata, settings) lives as
      long as the process: it moves out of the collector's generations, so
      full collections only scan objects of live calls and stall the loop less.
    - The collector runs in short pauses (:data:`GC_THRESHOLDS`): a collection
      stops the event loop, SIP and every call's RTP with it, for as long as
      it walks its generation, and the pause grows with the generation. With
      20,000 allocations between young collections (and Python's 10 and 10
      above) a young collection walked some 50,000 objects and stopped the
      loop 27-63 ms, a middle one 109-172 ms (150-300 calls/s); with 1,000
      and 4 they stop it 1-2 and 6-10 ms on average, for 1-4 % more
      of the core in the collector. Full collections walk everything the
      calls and their lingering transactions hold (95-170 ms at 150-300
      calls/s before those transactions kept their messages as bytes): they
      come after 500 middle collections at the earliest, some 2,000,000
      allocations as before (10 x 10 x 20,000), not five times as often; and
      Python also waits until the objects that reached the oldest generation
      since the last one number a quarter of those it kept.
    - A process that serves the API alone passes :data:`API_GC_THRESHOLDS`.
    - Every collection's pause is timed for ``/metrics``
      (:mod:`gateway.collector_pauses`).
    """
    threadpool_limits(limits=1, user_api="blas")
    watch_collector()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (the relay's and SIP's readers are faster on it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(settings: Settings) -> int:
    """Blocking entry point used by ``callgate run``."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(serve(settings))
