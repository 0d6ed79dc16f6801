"""ChannelTimeline: RTP timestamps onto the recording's sample clock (RFC 3550 5.1, A.1, A.8)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.analysis.timeline import ChannelTimeline, timestamp_delta

RATE = 8000
FRAME = 160  # 20 ms of PCMU/PCMA
SSRC = 0x1234ABCD


def test_first_packet_anchors_at_its_arrival() -> None:
    timeline = ChannelTimeline()
    assert timeline.position(SSRC, 987_654, 2.5, FRAME) == 20_000
    assert timeline.ssrc == SSRC
    assert timeline.reanchors == 0


def test_later_packets_follow_timestamps_not_arrival_jitter() -> None:
    timeline = ChannelTimeline()
    jitter = random.Random(7)
    base_ts = 4_000_000
    positions = []
    for index in range(200):
        arrival = 1.0 + index * 0.02 + (jitter.uniform(0.0, 0.08) if index else 0.0)
        positions.append(timeline.position(SSRC, base_ts + index * FRAME, arrival, FRAME))
    assert positions == [8000 + index * FRAME for index in range(200)]
    assert timeline.reanchors == 0


def test_a_lost_packet_leaves_its_gap() -> None:
    timeline = ChannelTimeline()
    assert timeline.position(SSRC, 1000, 0.0, FRAME) == 0
    assert timeline.position(SSRC, 1160, 0.02, FRAME) == 160
    # 1320 and 1480 lost; 1640 arrives on time
    assert timeline.position(SSRC, 1640, 0.08, FRAME) == 640


def test_timestamp_wraps_modulo_two_to_the_32() -> None:
    timeline = ChannelTimeline()
    start_ts = 2**32 - 2 * FRAME
    positions = [
        timeline.position(SSRC, (start_ts + index * FRAME) % 2**32, 0.5 + index * 0.02, FRAME)
        for index in range(6)
    ]
    assert positions == [4000 + index * FRAME for index in range(6)]
    assert timeline.reanchors == 0


def test_signed_timestamp_difference() -> None:
    assert timestamp_delta(10, 2**32 - 10) == 20
    assert timestamp_delta(2**32 - 10, 10) == -20
    assert timestamp_delta(5, 5) == 0
    assert timestamp_delta(2**31 - 1, 0) == 2**31 - 1
    assert timestamp_delta(2**31, 0) == -(2**31)


def test_pause_in_sending_keeps_timestamp_distance() -> None:
    # RFC 3550 5.1: the timestamp keeps running while nothing is sent (hold, suppression)
    timeline = ChannelTimeline()
    assert timeline.position(SSRC, 0, 0.0, FRAME) == 0
    assert timeline.position(SSRC, FRAME, 0.02, FRAME) == FRAME
    assert timeline.position(SSRC, 30 * RATE, 30.03, FRAME) == 30 * RATE
    assert timeline.reanchors == 0


def test_new_ssrc_reanchors_at_arrival() -> None:
    timeline = ChannelTimeline()
    timeline.position(SSRC, 5000, 0.0, FRAME)
    timeline.position(SSRC, 5160, 0.02, FRAME)
    assert timeline.position(0xBEEF, 77, 0.5, FRAME) == 4000
    assert timeline.position(0xBEEF, 77 + FRAME, 0.52, FRAME) == 4000 + FRAME
    assert timeline.ssrc == 0xBEEF
    assert timeline.reanchors == 1


def test_forward_jump_beyond_max_drift_reanchors_at_arrival() -> None:
    timeline = ChannelTimeline()
    timeline.position(SSRC, 0, 0.0, FRAME)
    timeline.position(SSRC, FRAME, 0.02, FRAME)
    # the sender's clock jumps 10 minutes ahead (a new source behind the same SSRC)
    jumped = 10 * 60 * RATE
    assert timeline.position(SSRC, jumped, 0.04, FRAME) == 320
    assert timeline.position(SSRC, jumped + FRAME, 0.06, FRAME) == 480
    assert timeline.reanchors == 1


def test_forward_step_within_max_drift_is_a_gap() -> None:
    timeline = ChannelTimeline()
    timeline.position(SSRC, 0, 0.0, FRAME)
    assert timeline.position(SSRC, 4000, 0.02, FRAME) == 4000
    assert timeline.reanchors == 0


def test_backward_jump_beyond_max_drift_reanchors_at_arrival() -> None:
    timeline = ChannelTimeline()
    timeline.position(SSRC, 900_000, 0.0, FRAME)
    timeline.position(SSRC, 900_160, 0.02, FRAME)
    assert timeline.position(SSRC, 3, 0.04, FRAME) == 320
    assert timeline.position(SSRC, 163, 0.06, FRAME) == 480
    assert timeline.reanchors == 1


def test_backward_jump_of_a_few_hundred_ms_is_taken_when_the_next_packet_continues() -> None:
    timeline = ChannelTimeline()
    ts = 50_000
    for index in range(100):  # 2 s of stream
        timeline.position(SSRC, ts + index * FRAME, index * 0.02, FRAME)
    back = ts + 100 * FRAME - 4000  # jumps back 0.5 s
    # on probation: placed by its timestamp (it could be a late packet)
    assert timeline.position(SSRC, back, 2.0, FRAME) == 16000 - 4000
    # the next packet continues from it: the jump is real, re-anchored at its arrival
    assert timeline.position(SSRC, back + FRAME, 2.02, FRAME) == 16000 + FRAME
    assert timeline.position(SSRC, back + 2 * FRAME, 2.04, FRAME) == 16000 + 2 * FRAME
    assert timeline.reanchors == 1


def test_one_packet_reordered_far_back_does_not_move_the_stream() -> None:
    timeline = ChannelTimeline()
    ts = 70_000
    arrivals = {index: index * 0.02 for index in range(60)}
    arrivals[20] = 0.7  # 300 ms late, well past "a few packets"
    order = sorted(arrivals, key=lambda index: arrivals[index])
    positions = {
        index: timeline.position(SSRC, ts + index * FRAME, arrivals[index], FRAME)
        for index in order
    }
    assert positions == {index: index * FRAME for index in range(60)}
    assert timeline.reanchors == 0


def test_two_unrelated_late_packets_do_not_confirm_a_jump() -> None:
    timeline = ChannelTimeline()
    ts = 70_000
    arrivals = {index: index * 0.02 for index in range(60)}
    arrivals[20] = 0.725  # 325 ms late
    arrivals[30] = 0.727  # 127 ms late, right after 20, six packets behind: not its sequel
    order = sorted(arrivals, key=lambda index: arrivals[index])
    assert order.index(30) == order.index(20) + 1
    positions = {
        index: timeline.position(SSRC, ts + index * FRAME, arrivals[index], FRAME)
        for index in order
    }
    assert positions == {index: index * FRAME for index in range(60)}
    assert timeline.reanchors == 0


def test_positions_are_never_negative() -> None:
    timeline = ChannelTimeline()
    assert timeline.position(SSRC, 10_000, 0.0, FRAME) == 0
    assert timeline.position(SSRC, 10_000 - FRAME, 0.01, FRAME) == 0
    assert timeline.position(0x99, 0, -0.5, FRAME) == 0


def test_long_running_drift_is_bounded_by_reanchoring() -> None:
    # a sender whose clock runs 1 % fast: its timestamps outrun real time
    timeline = ChannelTimeline(max_drift_s=1.0)
    drifts = []
    for index in range(10_000):  # 200 s
        arrival = index * 0.02 / 1.01
        position = timeline.position(SSRC, index * FRAME, arrival, FRAME)
        drifts.append(position - round(arrival * RATE))
    assert max(abs(drift) for drift in drifts) <= RATE
    assert timeline.reanchors >= 1


@settings(max_examples=200, deadline=None)
@given(
    base_ts=st.integers(0, 2**32 - 1),
    start_s=st.floats(0.0, 100.0),
    jitter_ms=st.lists(st.integers(0, 90), min_size=5, max_size=120),
    lost=st.sets(st.integers(1, 119)),
)
def test_jittered_stream_is_placed_exactly_by_timestamps(
    base_ts: int, start_s: float, jitter_ms: list[int], lost: set[int]
) -> None:
    # jitter up to 90 ms reorders up to four 20 ms packets: within "a few"
    timeline = ChannelTimeline()
    packets = [
        (index, start_s + index * 0.02 + (jitter_ms[index] / 1000 if index else 0.0))
        for index in range(len(jitter_ms))
        if index not in lost
    ]
    packets.sort(key=lambda packet: packet[1])
    anchor = round(start_s * RATE)  # packet 0 is never late nor lost, so it arrives first
    for index, arrival in packets:
        timestamp = (base_ts + index * FRAME) % 2**32
        assert timeline.position(SSRC, timestamp, arrival, FRAME) == anchor + index * FRAME
    assert timeline.reanchors == 0
