"""StreamStats: RFC 3550 A.1/A.3 loss from extended sequence numbers, A.8 jitter."""

from __future__ import annotations

import json
import struct

import pytest

from gateway.media.stats import StreamStats
from tests.unit.media.udp_phone import rtp


def feed(stats: StreamStats, seqs: list[int], ssrc: int = 7) -> None:
    for i, seq in enumerate(seqs):
        stats.update(rtp(seq, ssrc=ssrc), 100.0 + i * 0.02)


def test_in_order_stream_has_no_loss() -> None:
    stats = StreamStats()
    feed(stats, list(range(50)))
    assert (stats.expected, stats.received, stats.lost) == (50, 50, 0)
    assert stats.packets_in == 50
    assert stats.bytes_in == 50 * 172


def test_sequence_gap_counts_as_lost() -> None:
    stats = StreamStats()
    feed(stats, [0, 1, 2, 5, 6, 9])
    assert stats.expected == 10
    assert stats.lost == 4


def test_gap_across_sequence_wrap() -> None:
    stats = StreamStats()
    feed(stats, [65533, 65534, 0, 1])
    assert stats.expected == 5
    assert stats.lost == 1


def test_reordered_packet_is_not_lost() -> None:
    stats = StreamStats()
    feed(stats, [10, 12, 11, 13])
    assert stats.lost == 0


def test_duplicate_makes_loss_negative_as_rfc_3550_allows() -> None:
    stats = StreamStats()
    feed(stats, [0, 1, 1, 2])
    assert stats.lost == -1


def test_new_ssrc_starts_a_new_sequence_space() -> None:
    stats = StreamStats()
    feed(stats, [0, 1, 3, 4], ssrc=1)
    feed(stats, [1000, 1001, 1003], ssrc=2)
    assert stats.packets_in == 7
    assert stats.expected == 5 + 4
    assert stats.lost == 2


def test_large_jump_restarts_when_the_next_packet_follows() -> None:
    stats = StreamStats()
    feed(stats, [0, 1, 2, 40000, 40001, 40002, 40004])
    # 40000 is held back (RFC 3550 A.1 bad_seq); 40001 confirms the restart.
    assert stats.packets_in == 7
    assert stats.expected == 3 + 4
    assert stats.received == 3 + 3
    assert stats.lost == 1


def test_lone_large_jump_is_not_counted() -> None:
    stats = StreamStats()
    feed(stats, [0, 1, 2, 40000, 3, 4])
    assert stats.expected == 5
    assert stats.received == 5
    assert stats.lost == 0


def test_jitter_follows_rfc_3550_a8_on_a_crafted_arrival_pattern() -> None:
    # 8 kHz clock, 20 ms packets (160 ticks); arrivals 0, 20, 45, 60 ms:
    # transit 0, 0, 40, 0 ticks; D = 0, 40, 40; J = 0, 2.5, 2.5 + (40 - 2.5) / 16.
    stats = StreamStats()
    for seq, arrival_ms in enumerate([0.0, 20.0, 45.0, 60.0]):
        stats.update(rtp(seq, timestamp=seq * 160), 50.0 + arrival_ms / 1000)
    assert stats.jitter == pytest.approx(4.84375)
    assert stats.jitter_ms == pytest.approx(4.84375 / 8)


def test_even_pacing_has_no_jitter() -> None:
    stats = StreamStats()
    for seq in range(20):
        stats.update(rtp(seq), 10.0 + seq * 0.020)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_ms_uses_the_stream_clock_rate() -> None:
    stats = StreamStats(clock_rate=16000)
    for seq, arrival_ms in enumerate([0.0, 20.0, 30.0]):
        stats.update(rtp(seq, timestamp=seq * 320), 5.0 + arrival_ms / 1000)
    # transit 0, 0, -160 ticks; D = 0, 160; J = 10 ticks = 0.625 ms at 16 kHz.
    assert stats.jitter == pytest.approx(10.0)
    assert stats.jitter_ms == pytest.approx(0.625)


def test_clock_rate_change_rescales_jitter() -> None:
    stats = StreamStats()
    stats.jitter = 8.0
    stats.set_clock_rate(16000)
    assert stats.jitter_ms == pytest.approx(1.0)
    with pytest.raises(ValueError, match="clock rate"):
        stats.set_clock_rate(0)


def test_short_packet_is_refused_without_counting() -> None:
    stats = StreamStats()
    with pytest.raises(struct.error):
        stats.update(b"\x80\x00\x00\x01", 1.0)
    assert stats.packets_in == 0
    assert stats.last_packet_at is None


def test_to_dict_is_json_with_the_agreed_keys() -> None:
    stats = StreamStats()
    feed(stats, [0, 2])
    stats.packets_out = 3
    stats.bytes_out = 516
    stats.dropped_foreign = 1
    data = json.loads(json.dumps(stats.to_dict()))
    assert data == {
        "packets_in": 2,
        "bytes_in": 344,
        "packets_out": 3,
        "bytes_out": 516,
        "lost": 1,
        "jitter_ms": data["jitter_ms"],
        "dropped_foreign": 1,
    }
    assert isinstance(data["jitter_ms"], float)
    assert stats.last_packet_at == pytest.approx(100.02)


def test_timestamp_wrap_is_not_jitter() -> None:
    stats = StreamStats()
    start = (1 << 32) - 480
    for n in range(8):
        timestamp = (start + n * 160) % (1 << 32)
        stats.update(rtp(n, timestamp=timestamp), 7.0 + n * 0.020)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
