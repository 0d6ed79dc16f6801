"""One call's consent flow: notices, consent windows, digits, pause, and the capture gate.

The call manager creates a :class:`CallConsent` when a call's INVITE is
routed (the rule is decided then, from the parties' jurisdictions and the
tenant's policy), attaches it to the call's media session, and tells it
when the call is answered and when it ends. Everything else happens here:

- the notice plays to each party that must be told: to the caller as early
  media before the callee rings (``notice_timing = "early"``), or to each
  such party once the call is answered (``"answer"``), taking over the
  party's incoming stream for its length (:mod:`gateway.media.player`);
- key presses from RFC 4733 telephone-events, in-band tones and SIP INFO
  are merged so each press counts once (:mod:`gateway.consent.digits`),
  then drive the :class:`~gateway.consent.machine.ConsentMachine`;
- the consent window runs after each notice; an opt-in timeout continues
  the call unrecorded or ends it, as the policy says;
- every change becomes a consent event in the store, with the notice's
  sha256 and the policy version;
- while capture is allowed, the periodic beep (if configured) plays;
- the :class:`~gateway.media.capture.CaptureGate` reads the machine per
  packet and feeds the call's recording.

Pause and resume come from the tenant's side only: its agent's digits, a
SIP INFO from its PBX (:data:`CAPTURE_HEADER`), or the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import monotonic
from typing import Any

import numpy as np

from dsp.tones import tone
from gateway.analysis.recorder import StereoRecorder
from gateway.analysis.sealed import Keyring, seal_in_place
from gateway.analysis.timeline import ChannelTimeline
from gateway.calls.call import CALLEE, CALLER
from gateway.calls.codecs import event_types, g711_type
from gateway.consent.digits import DigitMerger
from gateway.consent.jurisdiction import Jurisdiction
from gateway.consent.machine import (
    ConsentChange,
    ConsentMachine,
    Digits,
    Method,
    Outcome,
    PartyState,
)
from gateway.consent.policy import ConsentPolicy
from gateway.consent.rule import Mode, Parties
from gateway.consent.rules import Decision
from gateway.media.capture import CAPTURE_DELAY_S, INBAND, RFC4733, CaptureGate, TapQueue
from gateway.media.notice import NoticeAudio
from gateway.media.player import Playback, play
from gateway.media.session import MediaSession
from gateway.sip.sdp import SessionDescription
from gateway.store.writer import ConsentEventRecord, RecordingRecord, RecordWriter

log = logging.getLogger(__name__)

CAPTURE_HEADER = "X-Callgate-Capture"
"""SIP INFO header from the tenant's PBX: ``pause``, ``resume`` or ``stop`` capture."""
CONSENT_HEADER = "X-Callgate-Consent"
"""INVITE header from the tenant's PBX asserting consent it collected: ``caller;callee``."""

SIDE_OF = {CALLER: "a", CALLEE: "b"}
CHANNEL_OF = {CALLER: 0, CALLEE: 1}
_METHODS = {RFC4733: Method.DIGIT, INBAND: Method.DIGIT, "info": Method.INFO}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the flow needs to know of its call."""

    record_id: str
    tenant: str
    direction: str  # inbound: the callee is the tenant's side; outbound: the caller
    started_at: datetime


class CallConsent:
    """The consent flow of one call (see the module docstring)."""

    def __init__(
        self,
        facts: CallFacts,
        policy: ConsentPolicy,
        decision: Decision,
        jurisdictions: dict[str, Jurisdiction],
        notices: dict[Path, NoticeAudio],
        writer: RecordWriter,
        recording_dir: Path,
        latency_s: float,
        hang_up: Callable[[str], None],
    ) -> None:
        self.facts = facts
        self.policy = policy
        self.decision = decision
        self.jurisdictions = jurisdictions
        self._notices = notices
        self._writer = writer
        self._hang_up = hang_up
        internal = CALLEE if facts.direction == "inbound" else CALLER
        external = CALLER if internal == CALLEE else CALLEE
        self.internal = internal
        required = (CALLER, CALLEE) if decision.parties is Parties.ALL else (external,)
        self.machine = ConsentMachine(
            decision.mode,
            (CALLER, CALLEE),
            required,
            internal=(internal,),
            digits=_digits(policy),
        )
        self.merger = DigitMerger()
        self._seq = 0
        self._ended = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._playbacks: dict[str, Playback] = {}
        self._told: set[str] = set()
        self._beep_handle: asyncio.TimerHandle | None = None
        self._beep_pcm = _beep(policy)
        self._session: MediaSession | None = None
        self._sdp: dict[str, SessionDescription] = {}
        self.gate: CaptureGate | None = None
        self.tap_queue: TapQueue | None = None
        """Where the gate's taps wait for analysis (the service's, shared by its calls)."""
        self._recording_dir = recording_dir
        self._latency_s = latency_s
        self._recorder: StereoRecorder | None = None
        self.analyse = False
        """Queue the recording for analysis (the tenant's ``analysis.enabled``)."""
        self.keyring: Keyring | None = None
        """Seal the recording as soon as it is finished: set when nothing analyses it first."""
        self.recording: Any = None
        self.early_done: Callable[[], None] | None = None

    @property
    def recorder(self) -> StereoRecorder:
        """The call's recorder, made when first asked for: a call whose rule never captures
        (most of a gateway's calls, where no tenant records) never builds its path."""
        if self._recorder is None:
            path = _recording_path(self._recording_dir, self.facts)
            # the configured window is for the network's late packets; the gate's own delay
            # on top
            self._recorder = StereoRecorder(path, latency_s=self._latency_s + CAPTURE_DELAY_S)
        return self._recorder

    # ----------------------------------------------------------- lifecycle

    @property
    def mode(self) -> Mode:
        return self.decision.mode

    @property
    def early(self) -> bool:
        """Whether the caller hears its notice as early media, before the callee rings."""
        return (
            self.policy.notice_timing == "early"
            and self.mode is not Mode.NONE
            and CALLER in self.machine.required
            and self.machine.states[CALLER] is PartyState.PENDING
        )

    def start_fields(self) -> dict[str, Any]:
        """The rule's fields of the call record, written with the call's start."""
        return {
            "consent_mode": self.decision.mode.value,
            "consent_parties": self.decision.parties.value,
            "consent_rules": self.decision.record(),
            "policy_version": self.policy.version,
        }

    def start(self, asserted: tuple[str, ...] = ()) -> None:
        """The rule applies from now; ``asserted`` parties' consent came in a PBX header."""
        now = monotonic()
        self._apply(self.machine.start(now))
        for party in asserted:
            self._apply(
                self.machine.grant(now, party, Method.HEADER, f"{CONSENT_HEADER} from the PBX")
            )

    def attach(self, session: MediaSession) -> None:
        """Tap the call's media: caller's stream on channel 0, callee's on channel 1.

        A call whose rule never captures gets no tap: nothing to hear, nothing to keep.
        """
        self._session = session
        if self.mode is Mode.NONE:
            return
        self.gate = CaptureGate(
            self.machine,
            self.recorder,
            {CALLER: ChannelTimeline(), CALLEE: ChannelTimeline()},
            dict(CHANNEL_OF),
            self.on_digit,
            queue=self.tap_queue,
        )
        for party, side in SIDE_OF.items():
            session.set_tap(side, self.gate.taps[party])
        self._update_gate()

    def learn_sdp(self, side: str, sdp: SessionDescription) -> None:
        """A party's SDP (what it receives): its G.711 type and telephone-events."""
        self._sdp[side] = sdp
        if self.gate is not None:
            self.gate.set_event_types(event_types(*self._sdp.values()))

    def play_early(self, on_done: Callable[[], None]) -> bool:
        """Play the caller's notice as early media; ``on_done`` when it ends. False: cannot."""
        self.early_done = on_done
        if self.mode is Mode.NONE:
            return False
        return self._tell(CALLER)

    def answered(self) -> None:
        """The callee answered: tell every party that must be told and is not yet."""
        if self.mode is Mode.NONE:
            return
        for party in (CALLER, CALLEE):
            pending = self.machine.states[party] is PartyState.PENDING
            if party in self.machine.required and party not in self._told and pending:
                self._tell(party)

    def finish(self) -> dict[str, Any]:
        """The call ended: stop everything; the record's consent fields."""
        if self._ended:
            return {}
        self._ended = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._beep_handle is not None:
            self._beep_handle.cancel()
        for playback in list(self._playbacks.values()):
            playback.stop()
        captured = 0.0
        if self.gate is not None:
            self.gate.finish()
            captured = self.gate.captured_s
        return {
            "consent_outcome": self.machine.outcome.value,
            "capture_s": round(captured, 3),
            "notice_sha256": self.machine.notice_sha256,
        }

    async def close_recording(self) -> None:
        """Finish the recording file (off the event loop) and list it in the store."""
        if self._recorder is None:
            return  # never made: nothing was ever to be captured
        if not self._recorder.started:
            # no file: nothing to finish, and no trip through a worker thread per call
            self._recorder.close()
            return
        loop = asyncio.get_running_loop()
        ended_at = utcnow()
        info = await loop.run_in_executor(None, self.recorder.close)
        if info is None:
            return
        self.recording = info
        path, key_id = str(info.path), None
        if self.keyring is not None:
            sealed = await loop.run_in_executor(None, seal_in_place, info.path, self.keyring)
            path, key_id = str(sealed), self.keyring.current
        self._writer.submit(
            RecordingRecord(
                record_id=self.facts.record_id,
                tenant=self.facts.tenant,
                path=path,
                channels=info.channels,
                sample_rate=info.sample_rate,
                started_at=ended_at - timedelta(seconds=info.duration_s),
                ended_at=ended_at,
                duration_s=info.duration_s,
                bytes=info.bytes,
                sha256=info.sha256,
                analyse=self.analyse,
                key_id=key_id,
            )
        )
        log.info("call %s: recording %s (%.1f s)", self.facts.record_id, info.path, info.duration_s)

    def tick(self, now: float) -> None:
        if self.gate is not None and not self._ended:
            self.gate.tick(now)

    # ----------------------------------------------------------- inputs

    def on_digit(self, party: str, digit: str, method: str, at: float) -> None:
        """A key press on a party's stream or in its SIP INFO."""
        if self._ended or not self.merger.accept(party, digit, method, at):
            return
        log.debug("call %s: %s pressed %s (%s)", self.facts.record_id, party, digit, method)
        self._apply(self.machine.digit(at, party, digit, _METHODS.get(method, Method.DIGIT)))

    def capture_command(self, command: str, method: Method) -> bool:
        """``pause``, ``resume`` or ``stop`` from the tenant's side; False if unknown."""
        now = monotonic()
        if command == "pause":
            self._apply(self.machine.set_paused(now, True, method))
        elif command == "resume":
            self._apply(self.machine.set_paused(now, False, method))
        elif command == "stop":
            for party in self.machine.required:
                self._apply(self.machine.withdraw(now, party, method, detail="capture stopped"))
        else:
            return False
        return True

    # ----------------------------------------------------------- notices

    def _tell(self, party: str) -> bool:
        """Play the notice to ``party``; False (and nothing captured) when it cannot play."""
        self._told.add(party)
        side = SIDE_OF[party]
        sdp = self._sdp.get(side)
        payload_type = g711_type(sdp)
        if self._session is None or payload_type is None:
            self._apply(
                self.machine.notice_failed(
                    monotonic(), f"no G.711 on the {party}'s leg: the notice cannot play"
                )
            )
            return False
        language = self.policy.language_for(self.jurisdictions[party])
        notice = self._notices[self.policy.notice_path(language, self.mode)]
        stream = self._session.streams[0].side(side)
        playback = play(stream, notice.pcm, payload_type)
        self._playbacks[party] = playback
        self._apply(self.machine.notice_started(monotonic(), party, notice.sha256))
        playback.done.add_done_callback(lambda _: self._notice_ended(party))
        return True

    def _notice_ended(self, party: str) -> None:
        self._playbacks.pop(party, None)
        if self._ended:
            return
        now = monotonic()
        self._apply(self.machine.notice_finished(now, party))
        if self.machine.awaiting(party):
            loop = asyncio.get_running_loop()
            self._timers[party] = loop.call_later(
                self.policy.consent_timeout_s, self._window_expired, party
            )
        if party == CALLER and self.early_done is not None:
            done, self.early_done = self.early_done, None
            done()

    def _window_expired(self, party: str) -> None:
        self._timers.pop(party, None)
        if self._ended:
            return
        changes = self.machine.window_expired(monotonic(), party)
        self._apply(changes)
        if (
            any(change.state is PartyState.TIMED_OUT for change in changes)
            and self.policy.on_timeout == "hangup"
        ):
            self._hang_up(f"no recording consent from the {party}")

    # ----------------------------------------------------------- state

    def _apply(self, changes: list[ConsentChange]) -> None:
        if not changes:
            return
        wall, mono = utcnow(), monotonic()
        for change in changes:
            self._seq += 1
            self._writer.submit(
                ConsentEventRecord(
                    record_id=self.facts.record_id,
                    tenant=self.facts.tenant,
                    seq=self._seq,
                    at=wall - timedelta(seconds=max(0.0, mono - change.at)),
                    party=change.party,
                    state=change.state.value,
                    previous=change.previous.value if change.previous else None,
                    method=change.method.value,
                    policy_version=self.policy.version,
                    digit=change.digit,
                    notice_sha256=change.notice_sha256,
                    detail=change.detail,
                )
            )
            log.info(
                "call %s consent: %s %s -> %s (%s%s)",
                self.facts.record_id,
                change.party,
                change.previous.value if change.previous else "-",
                change.state.value,
                change.method.value,
                f" {change.digit}" if change.digit else "",
            )
            if change.state.final and change.party in self._timers:
                self._timers.pop(change.party).cancel()
        self._update_gate()

    def _update_gate(self) -> None:
        outcome = self.machine.outcome
        listening = outcome in (Outcome.PENDING, Outcome.GRANTED) and not self._ended
        if self.gate is not None:
            self.gate.set_listening(listening)
        if self.machine.capture_allowed and self._beep_pcm is not None:
            if self._beep_handle is None:
                self._schedule_beep()
        elif self._beep_handle is not None:
            self._beep_handle.cancel()
            self._beep_handle = None

    def _schedule_beep(self) -> None:
        loop = asyncio.get_running_loop()
        self._beep_handle = loop.call_later(self.policy.beep.interval_s, self._beep)

    def _beep(self) -> None:
        self._beep_handle = None
        pcm = self._beep_pcm
        if self._ended or not self.machine.capture_allowed or self._session is None or pcm is None:
            return
        for party, side in SIDE_OF.items():
            payload_type = g711_type(self._sdp.get(side))
            if payload_type is not None and party not in self._playbacks:
                play(self._session.streams[0].side(side), pcm, payload_type)
        self._schedule_beep()


def _digits(policy: ConsentPolicy) -> Digits:
    keys = policy.digits
    return Digits(
        consent=keys.consent,
        decline=keys.decline,
        withdraw=keys.withdraw,
        pause=keys.pause,
        resume=keys.resume,
    )


def _beep(policy: ConsentPolicy) -> np.ndarray | None:
    beep = policy.beep
    if beep.interval_s <= 0:
        return None
    return tone(beep.frequency_hz, beep.duration_ms / 1000.0, amplitude_dbfs=-12.0, ramp_s=0.005)


def _recording_path(root: Path, facts: CallFacts) -> Path:
    day = facts.started_at.strftime("%Y/%m/%d")
    return root / facts.tenant / day / f"{facts.record_id}.wav"


def parse_consent_header(value: str) -> tuple[str, ...]:
    """The parties a ``X-Callgate-Consent`` header names: ``caller``, ``callee`` or both."""
    parties = []
    for item in value.replace(",", ";").split(";"):
        name = item.strip().lower()
        if not name:
            continue
        if name not in (CALLER, CALLEE):
            raise ValueError(f"{CONSENT_HEADER}: unknown party {item.strip()!r}")
        parties.append(name)
    return tuple(dict.fromkeys(parties))
