"""The gateway's consent service: tenants' policies, their notices, and each call's flow.

Built once at start-up: every tenant's :class:`~gateway.consent.policy.ConsentPolicy`
and every notice file it names, loaded and converted once (a notice that
cannot be read stops start-up with its path and the reason). For each new
call it resolves the parties' jurisdictions (a PBX may assert them with
``X-Callgate-Jurisdiction``, see :mod:`gateway.consent.jurisdiction`),
decides the rule, and makes the call's :class:`CallConsent`. A ticker lets
each flow's capture gate analyse and write what is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.analysis.live import LiveAnalysis
from gateway.analysis.pipeline import tenant_keys
from gateway.analysis.sealed import Keyring
from gateway.calls.call import CALLEE, CALLER
from gateway.calls.consent_flow import (
    CONSENT_HEADER,
    CallConsent,
    CallFacts,
    parse_consent_header,
)
from gateway.calls.policy_documents import PolicyDocumentError, check_policy_document
from gateway.config import Settings
from gateway.consent.jurisdiction import HEADER as JURISDICTION_HEADER
from gateway.consent.jurisdiction import Jurisdiction, parse_jurisdiction_header, resolve_party
from gateway.consent.machine import Method
from gateway.consent.policy import ConsentPolicy, build_policies
from gateway.consent.rule import Mode
from gateway.media.capture import TapQueue
from gateway.media.notice import NoticeAudio, load_notice
from gateway.sip.message import SipRequest
from gateway.store.policies import latest_policies
from gateway.store.writer import RecordWriter

log = logging.getLogger(__name__)

TICK_S = 0.05
"""How often capture gates analyse waiting audio and recordings write what is due."""


class ConsentService:
    """Policies, notices and the consent flows of the calls in progress."""

    def __init__(self, settings: Settings, writer: RecordWriter) -> None:
        self.settings = settings
        self.revisions: dict[str, int] = {}
        """Tenant -> revision of the stored policy in force (absent: the config's)."""
        self.by_record: dict[str, CallConsent] = {}
        self.live: LiveAnalysis | None = None
        """Transcripts while calls run, for tenants that ask (set once analysis starts)."""
        self.policies: dict[str, ConsentPolicy] = build_policies(settings)
        self.notices: dict[Path, NoticeAudio] = {}
        for policy in self.policies.values():
            for path in policy.notice_paths():
                if path not in self.notices:
                    self.notices[path] = load_notice(path)
        self.recording_dir = Path(settings.recording.dir)
        self.latency_s = settings.recording.latency_s
        self.writer = writer
        self.flows: set[CallConsent] = set()
        self.tap_queue = TapQueue()
        """The calls' capture taps wait here to be analysed together."""
        self._ticker: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def open(
        self,
        facts: CallFacts,
        request: SipRequest,
        numbers: dict[str, str | None],
        default_region: str,
        from_pbx: bool,
        hang_up: Callable[[str], None],
    ) -> CallConsent:
        """The consent flow of a new call, its rule decided and started."""
        policy = self.policies[facts.tenant]
        asserted: dict[str, Jurisdiction] = {}
        consented: tuple[str, ...] = ()
        if from_pbx:
            asserted = _asserted_places(request, facts.record_id)
            consented = _asserted_consent(request, facts.record_id)
        places = {
            party: resolve_party(
                numbers.get(party), default_region=default_region, asserted=asserted.get(party)
            )
            for party in (CALLER, CALLEE)
        }
        decision = policy.decide(places[CALLER], places[CALLEE])
        flow = CallConsent(
            facts,
            policy,
            decision,
            places,
            self.notices,
            self.writer,
            self.recording_dir,
            self.latency_s,
            hang_up,
        )
        tenant = self.settings.tenant_named(facts.tenant)
        flow.analyse = tenant.analysis.enabled
        flow.tap_queue = self.tap_queue
        keys, current = tenant_keys(tenant)
        if keys and not flow.analyse:  # nothing redacts it first: sealed as it is listed
            flow.keyring = Keyring.from_base64(keys, current)
        flow.start(consented if decision.mode is not Mode.NONE else ())
        if decision.mode is not Mode.NONE:  # a call that is never captured has nothing to tick
            self.flows.add(flow)
            self._ensure_ticker()
        self.by_record[facts.record_id] = flow
        if self.live is not None and decision.mode is not Mode.NONE:
            self.live.watch(facts.record_id, tenant, flow.recorder)
        return flow

    def capture_command(self, record_id: str, tenant: str, command: str) -> bool | None:
        """``pause``/``resume``/``stop`` from the API for a live call of ``tenant``.

        ``None`` when no call of that tenant with that record is live here;
        else whether the command was known. Runs on the event loop, so the gate
        sees it before the next packet is read.
        """
        flow = self.by_record.get(record_id)
        if flow is None or flow.facts.tenant != tenant:
            return None
        return flow.capture_command(command, Method.API)

    def install(
        self, tenant: str, policy: ConsentPolicy, notices: dict[Path, NoticeAudio], revision: int
    ) -> None:
        """Put a new policy of ``tenant`` in force for calls that start from now on."""
        self.notices.update(notices)
        self.policies[tenant] = policy
        self.revisions[tenant] = revision
        log.info("tenant %s: policy %s (revision %d) in force", tenant, policy.version, revision)

    async def refresh(self, engine: AsyncEngine) -> None:
        """Take up policies stored (by this or another instance) since the last look."""
        for tenant, row in (await latest_policies(engine)).items():
            if tenant not in self.policies or self.revisions.get(tenant) == row["revision"]:
                continue
            try:
                _, policy, notices = await asyncio.to_thread(
                    check_policy_document, self.settings, tenant, row["policy"]
                )
            except PolicyDocumentError as error:
                log.error(
                    "tenant %s: stored policy revision %d cannot be used here, keeping %s: %s",
                    tenant,
                    row["revision"],
                    self.policies[tenant].version,
                    error,
                )
                self.revisions[tenant] = row["revision"]
                continue
            self.install(tenant, policy, notices, row["revision"])

    def close(self, flow: CallConsent) -> dict[str, Any]:
        """The call ended: the flow's record fields; its recording is finished in the background."""
        fields = flow.finish()
        self.flows.discard(flow)
        self.by_record.pop(flow.facts.record_id, None)
        if self.live is not None:
            self.live.forget(flow.facts.record_id)
        task = asyncio.ensure_future(flow.close_recording())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return fields

    async def stop(self) -> None:
        """Wait for recordings being finished; stop the ticker."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        due = monotonic()
        while True:
            due = next_tick_due(due, monotonic())
            await asyncio.sleep(due - monotonic())
            now = monotonic()
            for flow in list(self.flows):
                try:
                    flow.tick(now)
                except Exception:
                    log.exception("call %s: capture tick failed", flow.facts.record_id)
            try:
                self.tap_queue.run()
            except Exception:
                log.exception("capture analysis failed")


def next_tick_due(last_due: float, now: float) -> float:
    """When a fixed-rate ticker's next tick is due: one :data:`TICK_S` after the last was due,
    so a tick that ran late does not push every later one back; when the loop was busy for
    longer than that, the tick runs at once and the missed ones are skipped."""
    due = last_due + TICK_S
    return due if due > now else now


def _asserted_places(request: SipRequest, record_id: str) -> dict[str, Jurisdiction]:
    value = request.headers.get(JURISDICTION_HEADER)
    if not value:
        return {}
    try:
        return parse_jurisdiction_header(value)
    except ValueError as error:
        log.warning("call %s: %s ignored: %s", record_id, JURISDICTION_HEADER, error)
        return {}


def _asserted_consent(request: SipRequest, record_id: str) -> tuple[str, ...]:
    value = request.headers.get(CONSENT_HEADER)
    if not value:
        return ()
    try:
        return parse_consent_header(value)
    except ValueError as error:
        log.warning("call %s: %s ignored: %s", record_id, CONSENT_HEADER, error)
        return ()
