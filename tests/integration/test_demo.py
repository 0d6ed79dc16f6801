"""``callgate demo``: three calls through an in-process gateway, with nothing else installed.

The command runs as a user runs it (the ``callgate`` script, a subprocess)
with ``--dir`` and ``--keep``, so what it leaves behind can be checked:
its printed account of the three calls, the recording files, the store,
and ``callgate calls`` reading that store through the configuration it
wrote. Its calls play the shipped English notices (6.3 to 9.8 s), so this
one test takes about 20 s.

Expected, by the caller's area code (the tenant's policy in the demo):
404 Georgia opt-in, presses 1: granted and recorded; 512 Texas opt-out,
presses 9: declined, not recorded; 212 New York notice: granted and recorded.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from dsp.wav import read_wav
from gateway.config import load_settings
from gateway.store.engine import make_engine
from gateway.store.queries import get_call, latest_calls
from tests.support.gateway import callgate_command

TIMEOUT_S = 120
EXPECTED = {
    "404": ("opt_in", "granted"),
    "512": ("opt_out", "declined"),
    "212": ("notice", "granted"),
}
"""Caller's area code -> (consent mode, consent outcome)."""
AUDIBLE_RMS = 300.0
"""A channel with a -12 dBFS tone in it is far louder than this; silence is 0."""


def area_code(number: str) -> str:
    assert number.startswith("+1") and len(number) == 12, number
    return number[2:5]


def call_blocks(output: str) -> list[str]:
    """The printed account of each call, in order (from its "Call N of 3" line on)."""
    starts = [match.start() for match in re.finditer(r"^Call \d of 3: ", output, re.M)]
    ends = [*starts[1:], output.find("\nSummary: ")]
    return [output[start:end] for start, end in zip(starts, ends, strict=True)]


def field(block: str, name: str) -> str:
    match = re.search(rf"^  {name} +(.+)$", block, re.M)
    assert match, f"no {name!r} line in\n{block}"
    return match[1].strip()


def stored_calls(config: Path) -> list[dict[str, Any]]:
    settings = load_settings(config, env={})

    async def fetch() -> list[dict[str, Any]]:
        engine = make_engine(settings.store.url)
        try:
            rows = await latest_calls(engine, 10)
            found = [await get_call(engine, record_id=row["id"]) for row in rows]
            return [record for record in found if record is not None]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


def test_demo_places_three_calls_and_leaves_their_records(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    demo = subprocess.run(
        [*callgate_command(), "demo", "--dir", str(directory), "--keep"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert demo.returncode == 0, f"stdout:\n{demo.stdout}\nstderr:\n{demo.stderr}"
    output = demo.stdout
    assert str(directory) in output.splitlines()[1]  # the directory is named at the start
    config = directory / "gateway.toml"
    assert f"callgate calls --config {config}" in output

    # the printed account: three calls, each with its rule, trail and recording
    blocks = call_blocks(output)
    assert len(blocks) == 3, output
    printed: dict[str, Path | None] = {}
    for block in blocks:
        area = area_code(field(block, "from").split()[0])
        mode, outcome = EXPECTED[area]
        assert field(block, "direction") == "inbound"
        assert field(block, "consent").startswith(f"mode {mode}, one party: {outcome}"), block
        assert re.search(r"^    caller +US-\w\w, area code " + area, block, re.M), block
        recording = field(block, "recording")
        printed[area] = None if recording == "no recording (no consent)" else Path(recording)
    assert list(printed) == ["404", "512", "212"]
    assert re.search(r"caller declined +digit +digit 9 ", blocks[1])
    assert re.search(r"caller granted +digit +digit 1 ", blocks[0])
    assert re.search(r"caller granted +implied ", blocks[2])
    assert re.search(r"^Summary: 3 calls, 2 recorded", output, re.M)

    # the two recordings exist as two-channel WAVs with audio on both; the declined call has none
    assert printed["512"] is None
    recorded = [printed["404"], printed["212"]]
    for path in recorded:
        assert path is not None and path.is_file(), path
        samples, rate = read_wav(path.read_bytes())
        assert rate == 8000 and samples.ndim == 2 and samples.shape[1] == 2, samples.shape
        rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2, axis=0))
        assert (rms > AUDIBLE_RMS).all(), (path, rms)
    assert sorted(directory.rglob("*.wav*")) == sorted(recorded)

    # the store agrees
    records = stored_calls(config)
    assert len(records) == 3
    for record in records:
        mode, outcome = EXPECTED[area_code(record["source_number"])]
        assert (record["consent_mode"], record["consent_outcome"]) == (mode, outcome)
        paths = [Path(item["path"]) for item in record["recordings"]]
        assert paths == (
            [] if outcome == "declined" else [printed[area_code(record["source_number"])]]
        )

    # and `callgate calls` reads them back through the configuration the demo wrote
    listing = subprocess.run(
        [*callgate_command(), "calls", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split()[-1] == "consent"
    listed = sorted((area_code(row.split()[4]), row.split()[-1]) for row in rows)
    assert listed == sorted((area, outcome) for area, (_, outcome) in EXPECTED.items())
