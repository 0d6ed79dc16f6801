"""``callgate demo``: three calls through a gateway started in this process, then their records.

Nothing else is needed: the gateway (:class:`gateway.app.Gateway`) runs on
the demo's own asyncio loop on loopback, with a SQLite store and the
recordings in one directory, and two built-in phones
(:class:`~gateway.demo.Phone`) stand in for the tenant's PBX (127.0.0.2, the
agent) and its SIP trunk (127.0.0.3, the outside callers). The gateway binds
127.0.0.1 and tells the two apart by the sender's address. Everything on
the wire is real: SIP over UDP (RFC 3261), G.711 RTP (RFC 3551 4.5.14) and
key presses as telephone-events (RFC 4733).

The tenant's home is New York; its policy overrides two rows of the shipped
consent rules, so the caller's area code picks the rule of each call:

====  ============  ===========================  =====================================
call  caller        rule                         what the caller does
====  ============  ===========================  =====================================
1     +1 404 (GA)   opt_in, one party (tenant)   presses 1 after the notice (RFC 4733)
2     +1 512 (TX)   opt_out, one party (tenant)  presses 9 in the window after it
3     +1 212 (NY)   notice, one party (shipped)  stays on the line
====  ============  ===========================  =====================================

Under a one-party rule only the external caller is told or asked (the
agent's side is the tenant's own, granted by policy); the shipped English
notices play at the answer. Every caller "talks" (a tone) after the
notice, the agent's phone sends a tone throughout, and what is recorded
is what came after consent only. The three calls run at once; each
script is timed from the length of the notice its caller hears.

Afterwards the gateway is stopped (every record written), and each call's
record, consent trail and recording are read back with
:func:`gateway.store.queries.get_call` and printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from gateway.config import ConfigError, Settings, load_settings
from gateway.consent.rule import Mode
from gateway.demo.phone import AnswerMode, Phone, PhoneCall
from gateway.demo.script import AudioScript, Digit, Hangup, Tone
from gateway.logs import setup_logging

__all__ = [
    "CONFIG_NAME",
    "DemoError",
    "DemoOptions",
    "Scenario",
    "demo_config",
    "find_media_block",
    "main",
    "run_demo",
    "scenarios",
]

GATEWAY_HOST: Final = "127.0.0.1"
PBX_HOST: Final = "127.0.0.2"
TRUNK_HOST: Final = "127.0.0.3"
TENANT: Final = "demo"
AGENT_NUMBER: Final = "+12125550100"
"""The tenant's number the outside callers dial (New York, like the tenant's home)."""

CONFIG_NAME: Final = "gateway.toml"
STORE_NAME: Final = "calls.sqlite3"
RECORDINGS_NAME: Final = "recordings"

MEDIA_SPAN: Final = (30000, 30999)
"""Where the relay's port block is looked for: below Linux's ephemeral range (32768-)."""
MEDIA_BLOCK: Final = 200
"""Ports in the relay's block: 100 RTP/RTCP pairs (RFC 3550 11), far more than three calls need."""

CONSENT_TIMEOUT_S: Final = 5.0
LANGUAGE: Final = "en"
CALLER_TONE_HZ: Final = 2000.0
AGENT_TONE_HZ: Final = 1500.0
AGENT_RING_S: Final = 0.3
AFTER_NOTICE_S: Final = 0.6
"""How long after its notice ends a caller presses its digit: clear of the notice's end."""
TALK_S: Final = 2.0
CALL_GRACE_S: Final = 20.0
"""How much longer than its script a call may take before the demo gives up on it."""
DRAIN_S: Final = 5.0
SIGNALLING_SETTLE_S: Final = 0.3
"""Time for the last BYE's 200 OK to cross before the gateway stops."""


class DemoError(Exception):
    """The demo could not run or a call did not do what it shows; the message says why."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``callgate demo`` was asked: where (None: a fresh temporary directory),
    whether to keep the directory, and whether to log at INFO."""

    directory: Path | None = None
    keep: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Scenario:
    """One call of the demo: who calls, under which rule, and what the caller does."""

    title: str
    caller: str
    place: str
    mode: Mode
    expected: str
    """The consent outcome the call must end with."""
    recorded: bool
    script: Callable[[float], AudioScript]
    """The caller's script, from the length (s) of the notice it hears."""

    def length(self, notice_s: float) -> float:
        """When the caller hangs up, in seconds from the answer."""
        return max(
            (step.at for step in self.script(notice_s).steps if isinstance(step, Hangup)),
            default=notice_s,
        )


def _opt_in_script(notice_s: float) -> AudioScript:
    press = notice_s + AFTER_NOTICE_S
    return AudioScript(
        [
            Digit("1", press),
            Tone(CALLER_TONE_HZ, press + 0.5, TALK_S),
            Hangup(press + 0.5 + TALK_S + 0.5),
        ]
    )


def _opt_out_script(notice_s: float) -> AudioScript:
    press = notice_s + AFTER_NOTICE_S
    return AudioScript(
        [
            Digit("9", press),
            Tone(CALLER_TONE_HZ, press + 0.5, TALK_S),
            Hangup(press + 0.5 + TALK_S + 0.5),
        ]
    )


def _notice_script(notice_s: float) -> AudioScript:
    talk = notice_s + AFTER_NOTICE_S
    return AudioScript([Tone(CALLER_TONE_HZ, talk, TALK_S), Hangup(talk + TALK_S + 0.5)])


def scenarios() -> tuple[Scenario, ...]:
    """The demo's three calls, in the order they are shown."""
    return (
        Scenario(
            title="a caller from Georgia, opt-in: presses 1 after the notice, then talks",
            caller="+14045550142",
            place="US-GA",
            mode=Mode.OPT_IN,
            expected="granted",
            recorded=True,
            script=_opt_in_script,
        ),
        Scenario(
            title="a caller from Texas, opt-out: presses 9 in the window after the notice",
            caller="+15125550123",
            place="US-TX",
            mode=Mode.OPT_OUT,
            expected="declined",
            recorded=False,
            script=_opt_out_script,
        ),
        Scenario(
            title="a caller from New York, notice only: stays on the line and talks",
            caller="+12125550187",
            place="US-NY",
            mode=Mode.NOTICE,
            expected="granted",
            recorded=True,
            script=_notice_script,
        ),
    )


# --------------------------------------------------------------------------- set-up


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(text)


def demo_config(
    directory: Path,
    *,
    pbx_port: int,
    trunk_port: int,
    media_ports: tuple[int, int],
    log_level: str = "WARNING",
) -> str:
    """The demo gateway's settings file, as TOML text (see config/gateway.toml for every key)."""
    store_url = f"sqlite+aiosqlite:///{directory / STORE_NAME}"
    return f"""# callgate demo: written by `callgate demo`; see config/gateway.toml for every key.
# Read its calls again with: callgate calls --config {directory / CONFIG_NAME}

instance_id = "callgate-demo"
log_level = "{log_level}"
drain_timeout_s = {DRAIN_S}

[sip]
# port 0: any free port, chosen when the gateway starts
listen = [{{ transport = "udp", host = "{GATEWAY_HOST}", port = 0 }}]

[media]
host = "{GATEWAY_HOST}"
port_min = {media_ports[0]}
port_max = {media_ports[1]}

[store]
url = {_toml_string(store_url)}
max_delay_s = 0.02

[recording]
dir = {_toml_string(str(directory / RECORDINGS_NAME))}

[api]
# the demo prints what the API would serve; `callgate run` serves it
enabled = false

[analysis]
# the demo's phones send tones, not speech: nothing to transcribe
workers = 0

[[tenants]]
name = "{TENANT}"
default_region = "US"

[tenants.pbx]
# the agent's phone
host = "{PBX_HOST}"
port = {pbx_port}

[tenants.trunk]
# the carrier's side: the outside callers' phone
host = "{TRUNK_HOST}"
port = {trunk_port}

[tenants.consent]
# New York: the shipped US rule (notice, one party). The notices are the
# shipped English recordings (config/notices/en).
home = "US-NY"
notice_timing = "answer"
consent_timeout_s = {CONSENT_TIMEOUT_S}
on_timeout = "continue"

[tenants.consent.overrides]
# The caller's area code picks the rule: 404 Georgia, 512 Texas.
"US-GA" = {{ mode = "opt_in", parties = "one" }}
"US-TX" = {{ mode = "opt_out", parties = "one" }}
"""


def _udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def find_media_block(
    host: str = GATEWAY_HOST, span: tuple[int, int] = MEDIA_SPAN, size: int = MEDIA_BLOCK
) -> tuple[int, int]:
    """The first block of ``size`` ports in ``span`` that are all free for UDP on ``host``."""
    low, high = span
    for start in range(low + (low & 1), high - size + 2, size):
        if all(_udp_port_free(host, port) for port in range(start, start + size)):
            return start, start + size - 1
    raise DemoError(
        f"no block of {size} free UDP ports in {low}-{high} on {host} for the media relay"
    )


class DemoDirectory:
    """The demo's directory: made (or taken) at the start, cleaned up at the end unless kept.

    A fresh temporary directory is removed whole. A given one loses only the
    entries this run added, and the directory itself if this run made it.
    """

    def __init__(self, given: Path | None, keep: bool) -> None:
        self.keep = keep
        self.made = given is None or not given.exists()
        if given is None:
            self.path = Path(tempfile.mkdtemp(prefix="callgate-demo-")).resolve()
        else:
            self.path = given.expanduser().resolve()
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DemoError(f"cannot make the directory {self.path}: {error}") from None
            if not self.path.is_dir():
                raise DemoError(f"{self.path} is not a directory")
        self._before = {entry.name for entry in self.path.iterdir()}

    def clean_up(self) -> None:
        if self.keep:
            return
        if self.made:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for entry in self.path.iterdir():
            if entry.name in self._before:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


async def _start_phone(host: str, name: str) -> Phone:
    phone = Phone(host, 0, name=name)
    try:
        await phone.start()
    except OSError as error:
        hint = "" if host == GATEWAY_HOST else f" (on macOS: sudo ifconfig lo0 alias {host} up)"
        raise DemoError(f"cannot bind the {name}'s SIP socket on {host}: {error}{hint}") from None
    return phone


# --------------------------------------------------------------------------- the calls


@dataclass
class PlacedCall:
    """One demo call as the phones saw it."""

    scenario: Scenario
    caller: PhoneCall
    callee: PhoneCall | None = None
    ended: str = ""


@dataclass
class DemoRun:
    """What the run left to show: the gateway's address, the calls and their records."""

    sip_port: int
    media_ports: tuple[int, int]
    notice_s: dict[Mode, float]
    calls: list[PlacedCall] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)


async def _callee_of(pbx: Phone, number: str, timeout: float) -> PhoneCall | None:
    """The call the agent's phone received from ``number``, if one arrives in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for call in pbx.incoming:
            if call.invite.from_.uri.user == number:
                return call
        await asyncio.sleep(0.02)
    return None


async def _place(
    trunk: Phone, pbx: Phone, gateway_port: int, scenario: Scenario, notice_s: float
) -> PlacedCall:
    call = await trunk.call(
        (GATEWAY_HOST, gateway_port),
        to_user=AGENT_NUMBER,
        from_user=scenario.caller,
        script=scenario.script(notice_s),
    )
    placed = PlacedCall(scenario, call)
    limit = scenario.length(notice_s) + CALL_GRACE_S
    try:
        placed.ended = await asyncio.wait_for(asyncio.shield(call.ended), limit)
    except TimeoutError:
        raise DemoError(
            f"the call from {scenario.caller} did not end within {limit:.0f} s"
        ) from None
    placed.callee = await _callee_of(pbx, scenario.caller, timeout=0.5)
    if placed.callee is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(placed.callee.ended), 5.0)
    return placed


async def _read_records(
    settings: Settings, calls: Sequence[PlacedCall]
) -> list[dict[str, Any] | None]:
    from gateway.store.engine import make_engine
    from gateway.store.queries import get_call

    engine = make_engine(settings.store.url)
    try:
        return [await get_call(engine, call_id=placed.caller.call_id) for placed in calls]
    finally:
        await engine.dispose()


async def _run(settings: Settings, pbx: Phone, trunk: Phone, out: TextIO) -> DemoRun:
    """Start the gateway, place the calls, stop the gateway, read the records."""
    from gateway.app import Gateway
    from gateway.media.notice import NoticeError

    try:
        gateway = Gateway(settings)
    except NoticeError as error:
        raise DemoError(str(error)) from None
    try:
        await gateway.start()
    except BaseException as error:
        with contextlib.suppress(Exception):
            await gateway.stop(drain_timeout=0)
        if isinstance(error, OSError):
            raise DemoError(f"the gateway cannot start: {error}") from None
        raise
    try:
        policy = gateway.consent.policies[TENANT]
        notice_s = {
            mode: gateway.consent.notices[policy.notice_path(LANGUAGE, mode)].duration_s
            for mode in (Mode.NOTICE, Mode.OPT_OUT, Mode.OPT_IN)
        }
        demo = DemoRun(
            sip_port=gateway.stack.transports.local_port("udp"),
            media_ports=(settings.media.port_min, settings.media.port_max),
            notice_s=notice_s,
        )
        _write_setting_up(demo, pbx, trunk, out)
        pbx.answer_mode = AnswerMode(
            ring_s=AGENT_RING_S,
            script=AudioScript([Tone(AGENT_TONE_HZ, 0.0, 60.0)]),
        )
        placing = [
            _place(trunk, pbx, demo.sip_port, scenario, notice_s[scenario.mode])
            for scenario in scenarios()
        ]
        demo.calls = list(await asyncio.gather(*placing))
        await asyncio.sleep(SIGNALLING_SETTLE_S)
    finally:
        await gateway.stop(drain_timeout=DRAIN_S)
    demo.records = await _read_records(settings, demo.calls)
    return demo


async def _demo(directory: DemoDirectory, options: DemoOptions, out: TextIO) -> DemoRun:
    pbx = await _start_phone(PBX_HOST, "agent's phone")
    try:
        trunk = await _start_phone(TRUNK_HOST, "callers' phone")
        try:
            media_ports = find_media_block()
            config_path = directory.path / CONFIG_NAME
            config_path.write_text(
                demo_config(
                    directory.path,
                    pbx_port=pbx.sip_port,
                    trunk_port=trunk.sip_port,
                    media_ports=media_ports,
                    log_level="INFO" if options.verbose else "WARNING",
                ),
                encoding="utf-8",
            )
            try:
                settings = load_settings(config_path, env={})
            except ConfigError as error:
                problems = "; ".join(str(problem) for problem in error.all())
                raise DemoError(f"the demo's configuration is not valid: {problems}") from None
            return await _run(settings, pbx, trunk, out)
        finally:
            await trunk.close()
    finally:
        await pbx.close()


# --------------------------------------------------------------------------- output


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f} s"


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _clock(value: Any, since: Any) -> str:
    """``HH:MM:SS.mmm`` (UTC) and the offset from ``since``."""
    instant, start = _instant(value), _instant(since)
    if instant is None:
        return "-"
    text = instant.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
    if start is None:
        return text
    return f"{text} (+{(instant - start).total_seconds():4.1f} s)"


def _short(digest: Any) -> str:
    return str(digest)[:12] if digest else "-"


def _parties(value: Any) -> str:
    return {"one": "one party", "all": "all parties"}.get(str(value), str(value))


def _rule_lines(entries: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for entry in entries:
        sets = [
            what
            for what, flag in (
                ("mode", entry.get("sets_mode")),
                ("parties", entry.get("sets_parties")),
            )
            if flag
        ]
        decides = f" (sets the {' and '.join(sets)})" if sets else ""
        lines.append(
            f"    {entry.get('role', '-'):<7} {entry.get('jurisdiction', '-')}, "
            f"{entry.get('place', '-')}: rule {entry.get('rule', '-')}, "
            f"{entry.get('mode', '-')}, {_parties(entry.get('parties'))}{decides}"
        )
        lines.append(
            f"            why: {entry.get('why', '-')}; source: {entry.get('source', '-')}"
        )
    return lines


def _trail_lines(events: Sequence[dict[str, Any]], started_at: Any) -> list[str]:
    if not events:
        return ["    (no consent events)"]
    lines = []
    for event in events:
        digit = f"digit {event['digit']}" if event.get("digit") else ""
        notice = f"notice {_short(event['notice_sha256'])}" if event.get("notice_sha256") else ""
        line = (
            f"    {_clock(event.get('at'), started_at)}  {event.get('party', '-'):<6} "
            f"{event.get('state', '-'):<9} {event.get('method', '-'):<8} {digit:<7} {notice}"
        )
        lines.append(line.rstrip())
    return lines


def _recording_lines(recordings: Sequence[dict[str, Any]]) -> list[str]:
    if not recordings:
        return ["  recording  no recording (no consent)"]
    lines = []
    for recording in recordings:
        lines.append(f"  recording  {recording.get('path', '-')}")
        lines.append(
            f"             {_seconds(recording.get('duration_s'))}, "
            f"{recording.get('channels', '-')} channels (caller left, agent right), "
            f"{recording.get('sample_rate', '-')} Hz, {recording.get('bytes', '-')} bytes, "
            f"sha256 {_short(recording.get('sha256'))}"
        )
    return lines


def call_lines(
    number: int, total: int, placed: PlacedCall, record: dict[str, Any] | None
) -> list[str]:
    """The printed account of one call: record, rules, consent trail, recording."""
    scenario = placed.scenario
    lines = [f"Call {number} of {total}: {scenario.title}"]
    if record is None:
        lines.append(f"  no call record (the caller's phone saw: {placed.ended or 'nothing'})")
        return lines
    hangup = f", hung up by {record['hangup_by']}" if record.get("hangup_by") else ""
    lines += [
        f"  from       {record.get('source_number') or record.get('source_uri')} (outside caller)",
        f"  to         {record.get('destination_number') or record.get('destination_uri')}"
        " (the tenant's agent)",
        f"  direction  {record.get('direction', '-')}",
        f"  duration   {_seconds(record.get('duration_s'))}",
        f"  outcome    {record.get('disposition', '-')}, final status "
        f"{record.get('final_status', '-')}{hangup}",
        f"  consent    mode {record.get('consent_mode', '-')}, "
        f"{_parties(record.get('consent_parties'))}: {record.get('consent_outcome', '-')}"
        f" (captured {_seconds(record.get('capture_s'))})",
        f"  policy     {record.get('policy_version', '-')}",
        "  rules applied (strictest wins):",
        *_rule_lines(record.get("consent_rules") or []),
        "  consent trail (time UTC, party, state, method, digit, notice sha256):",
        *_trail_lines(record.get("consent_events") or [], record.get("started_at")),
        *_recording_lines(record.get("recordings") or []),
    ]
    return lines


def _problems(demo: DemoRun) -> list[str]:
    """Where a call did not end as it shows; empty when the demo worked."""
    problems = []
    for number, (placed, record) in enumerate(zip(demo.calls, demo.records, strict=True), 1):
        scenario = placed.scenario
        if record is None:
            problems.append(f"call {number} has no call record")
            continue
        outcome = record.get("consent_outcome")
        if record.get("consent_mode") != scenario.mode.value:
            problems.append(
                f"call {number}: consent mode {record.get('consent_mode')}, "
                f"not {scenario.mode.value}"
            )
        if outcome != scenario.expected:
            problems.append(f"call {number}: consent {outcome}, not {scenario.expected}")
        recordings = record.get("recordings") or []
        if scenario.recorded and not recordings:
            problems.append(f"call {number}: no recording")
        if not scenario.recorded and recordings:
            problems.append(f"call {number}: recorded without consent")
        for recording in recordings:
            if not Path(str(recording.get("path"))).is_file():
                problems.append(f"call {number}: recording {recording.get('path')} is missing")
    return problems


def _write(out: TextIO, *lines: str) -> None:
    out.write("".join(f"{line}\n" for line in lines))
    out.flush()


def _write_setting_up(demo: DemoRun, pbx: Phone, trunk: Phone, out: TextIO) -> None:
    notices = ", ".join(f"{mode.value} {demo.notice_s[mode]:.1f} s" for mode in demo.notice_s)
    longest = max(scenario.length(demo.notice_s[scenario.mode]) for scenario in scenarios())
    _write(
        out,
        f"  gateway    SIP udp {GATEWAY_HOST}:{demo.sip_port}, "
        f"media {GATEWAY_HOST} ports {demo.media_ports[0]}-{demo.media_ports[1]}",
        f"  tenant     {TENANT}: agent's phone (PBX) {PBX_HOST}:{pbx.sip_port}, "
        f"callers' phone (trunk) {TRUNK_HOST}:{trunk.sip_port}",
        f"  consent    home US-NY (notice, one party); overrides US-GA opt_in, "
        f"US-TX opt_out; window {CONSENT_TIMEOUT_S:g} s",
        f"  notices    shipped {LANGUAGE}: {notices}",
        "",
        f"Placing {len(scenarios())} calls at once, trunk -> gateway -> agent "
        f"(about {longest:.0f} s) ...",
        "",
    )


def _summary(demo: DemoRun) -> str:
    parts = []
    recorded = 0
    for number, (placed, record) in enumerate(zip(demo.calls, demo.records, strict=True), 1):
        if record is None:
            parts.append(f"call {number} no record")
            continue
        kept = bool(record.get("recordings"))
        recorded += kept
        parts.append(
            f"call {number} {placed.scenario.place} {record.get('consent_mode')} "
            f"{record.get('consent_outcome')} ({'recorded' if kept else 'not recorded'})"
        )
    return f"Summary: {len(demo.calls)} calls, {recorded} recorded: " + "; ".join(parts)


# --------------------------------------------------------------------------- entry points


def run_demo(options: DemoOptions, out: TextIO) -> None:
    """Run the demo, writing its account to ``out``; :class:`DemoError` when it fails."""
    setup_logging("INFO" if options.verbose else "WARNING")
    directory = DemoDirectory(options.directory, options.keep)
    config_path = directory.path / CONFIG_NAME
    kept = "kept" if options.keep else "removed at the end; --keep keeps it"
    _write(
        out,
        "callgate demo: a gateway in this process, two built-in phones, three calls",
        f"  directory  {directory.path} ({kept})",
    )
    try:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            demo = runner.run(_demo(directory, options, out))
        total = len(demo.calls)
        for number, (placed, record) in enumerate(zip(demo.calls, demo.records, strict=True), 1):
            _write(out, *call_lines(number, total, placed, record), "")
        _write(out, _summary(demo))
        problems = _problems(demo)
    finally:
        directory.clean_up()
    if options.keep:
        _write(out, f"Look again: callgate calls --config {config_path}")
    else:
        _write(out, "The directory is removed; `callgate demo --keep` keeps it to look again.")
    if problems:
        raise DemoError("the demo did not go as it should: " + "; ".join(problems))


def _new_loop() -> asyncio.AbstractEventLoop:
    from gateway.app import new_event_loop

    return new_event_loop()


def main(options: DemoOptions, out: TextIO, err: TextIO) -> bool:
    """Run the demo; False after writing why it failed to ``err`` (a traceback with verbose)."""
    try:
        run_demo(options, out)
    except KeyboardInterrupt:
        err.write("callgate demo: interrupted\n")
        return False
    except Exception as error:
        if options.verbose:
            traceback.print_exc(file=err)
        reason = str(error) if isinstance(error, DemoError) else f"{type(error).__name__}: {error}"
        err.write(f"callgate demo: {reason}\n")
        return False
    return True
