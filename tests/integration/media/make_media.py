"""Generate the integration tests' media files reproducibly (NumPy only, no downloads).

Run from anywhere: ``python tests/integration/media/make_media.py``; the files are
written next to this script and the same bytes come out on every run.

Files:

- ``tone440_pcmu.pcap``: 3 s of a 440 Hz tone, G.711 mu-law (ITU-T G.711), as RTP
  (RFC 3550 section 5.1) with payload type 0 (RFC 3551 section 6), 20 ms packets of
  160 bytes, in a classic libpcap file with Ethernet/IPv4/UDP framing: what sipp's
  ``play_pcap_audio`` replays. The caller side plays this one.
- ``tone1000_pcmu.pcap``: the same with a 1000 Hz tone, for the callee side, so a
  receiver can tell which party a stream came from.
- ``tone2000_pcmu.pcap``: the same with a 2000 Hz tone: the marker a caller sends
  once it has consented, so a recording can be checked for it.
- ``tone440_8k.wav``: 3 s of 440 Hz, 16-bit PCM mono 8 kHz WAV, for baresip's aufile
  audio source.
- ``tone440_pcmu.ul``: the same tone as raw G.711 mu-law bytes, what sipp's
  ``rtp_stream`` sends (160 bytes to an RTP packet of payload type 0): the call-rate
  benchmark's caller, which sends from an ordinary UDP socket this way instead of a
  raw socket per call.
- ``dtmf_1_rfc4733.pcap`` and ``dtmf_9_rfc4733.pcap``: one telephone-event (RFC 4733
  section 2.3) for the digit, payload type 101, 100 ms with three end packets
  (section 2.5.1.4), for DTMF opt-in/opt-out tests.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

MEDIA_DIR = Path(__file__).resolve().parent

SAMPLE_RATE = 8000
PACKET_MS = 20
SAMPLES_PER_PACKET = SAMPLE_RATE * PACKET_MS // 1000
TONE_SECONDS = 3.0
TONE_AMPLITUDE = 0.3
PT_PCMU = 0
PT_TELEPHONE_EVENT = 101

# Fixed capture epoch (2024-01-01T00:00:00Z) so the files are byte-identical on each run.
CAPTURE_EPOCH_S = 1704067200
# Addresses and ports written into the frames; sipp replaces both with the call's own.
FRAME_SRC_IP = bytes([127, 0, 0, 2])
FRAME_DST_IP = bytes([127, 0, 0, 1])
FRAME_SRC_PORT = 6000
FRAME_DST_PORT = 6002

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17

MULAW_BIAS_14BIT = 0x21
MULAW_MAX_BIASED = 0x1FFF


def mulaw_encode(samples: np.ndarray) -> np.ndarray:
    """Encode 16-bit linear PCM to G.711 mu-law bytes (ITU-T G.711 section 3, table 2).

    Follows the reference coder: the top 14 bits are coded, the magnitude is biased by
    33 and saturates at the top code, the segment is the bit length above 6, and the bits
    are inverted on the wire (positive values keep the sign bit set).
    """
    linear = samples.astype(np.int32) >> 2
    mask = np.where(linear < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(linear) + MULAW_BIAS_14BIT, MULAW_MAX_BIASED)
    segment = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0, 7)
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    return (((segment << 4) | mantissa) ^ mask).astype(np.uint8)


def tone_pcm(frequency_hz: float, seconds: float, amplitude: float = TONE_AMPLITUDE) -> np.ndarray:
    """A sine tone as 16-bit linear PCM samples at 8 kHz."""
    count = round(seconds * SAMPLE_RATE)
    phase = 2.0 * np.pi * frequency_hz * np.arange(count) / SAMPLE_RATE
    return np.round(np.sin(phase) * amplitude * 32767).astype(np.int16)


def rtp_packet(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> bytes:
    """An RTP packet: version 2, no padding, extension or CSRC (RFC 3550 section 5.1)."""
    first = 0x80
    second = (0x80 if marker else 0x00) | payload_type
    header = struct.pack("!BBHII", first, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    return header + payload


def ones_complement_sum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_ipv4_ethernet_frame(udp_payload: bytes, ip_id: int) -> bytes:
    """Wrap a UDP payload in UDP (RFC 768), IPv4 (RFC 791) and Ethernet II headers."""
    udp_length = 8 + len(udp_payload)
    pseudo = FRAME_SRC_IP + FRAME_DST_IP + struct.pack("!BBH", 0, IPPROTO_UDP, udp_length)
    udp_no_sum = struct.pack("!HHHH", FRAME_SRC_PORT, FRAME_DST_PORT, udp_length, 0)
    udp_sum = ones_complement_sum(pseudo + udp_no_sum + udp_payload) or 0xFFFF
    udp = struct.pack("!HHHH", FRAME_SRC_PORT, FRAME_DST_PORT, udp_length, udp_sum)
    total_length = 20 + udp_length
    ip_no_sum = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total_length,
        ip_id & 0xFFFF,
        0x4000,
        64,
        IPPROTO_UDP,
        0,
        FRAME_SRC_IP,
        FRAME_DST_IP,
    )
    ip_sum = ones_complement_sum(ip_no_sum)
    ip = ip_no_sum[:10] + struct.pack("!H", ip_sum) + ip_no_sum[12:]
    ethernet = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
    ethernet += struct.pack("!H", ETHERTYPE_IPV4)
    return ethernet + ip + udp + udp_payload


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    """Write (offset seconds, RTP packet) pairs as a classic libpcap file (pcap-savefile(5))."""
    out = bytearray(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
    for index, (offset_s, rtp) in enumerate(packets):
        frame = udp_ipv4_ethernet_frame(rtp, ip_id=index + 1)
        micros_total = round(offset_s * 1_000_000)
        seconds, micros = divmod(micros_total, 1_000_000)
        out += struct.pack("<IIII", CAPTURE_EPOCH_S + seconds, micros, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))


def tone_rtp_packets(frequency_hz: float, ssrc: int) -> list[tuple[float, bytes]]:
    """The tone as 20 ms PCMU RTP packets with their send offsets."""
    encoded = mulaw_encode(tone_pcm(frequency_hz, TONE_SECONDS))
    packets: list[tuple[float, bytes]] = []
    for index in range(len(encoded) // SAMPLES_PER_PACKET):
        chunk = encoded[index * SAMPLES_PER_PACKET : (index + 1) * SAMPLES_PER_PACKET]
        rtp = rtp_packet(
            PT_PCMU,
            sequence=1000 + index,
            timestamp=160_000 + index * SAMPLES_PER_PACKET,
            ssrc=ssrc,
            payload=chunk.tobytes(),
            marker=index == 0,
        )
        packets.append((index * PACKET_MS / 1000, rtp))
    return packets


def dtmf_rtp_packets(event: int, ssrc: int, duration_ms: int = 100) -> list[tuple[float, bytes]]:
    """One RFC 4733 telephone-event: updates every 20 ms, then three end packets (2.5.1.4)."""
    volume = 10
    timestamp = 320_000
    packets: list[tuple[float, bytes]] = []
    steps = duration_ms // PACKET_MS
    sequence = 2000
    for step in range(1, steps + 1):
        ended = step == steps
        duration = step * SAMPLES_PER_PACKET
        payload = struct.pack("!BBH", event, (0x80 if ended else 0) | volume, duration)
        repeats = 3 if ended else 1
        for _ in range(repeats):
            rtp = rtp_packet(PT_TELEPHONE_EVENT, sequence, timestamp, ssrc, payload, step == 1)
            packets.append(((step - 1) * PACKET_MS / 1000, rtp))
            sequence += 1
    return packets


def write_wav(path: Path, samples: np.ndarray) -> None:
    """16-bit PCM mono 8 kHz WAV."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def write_all(out_dir: Path = MEDIA_DIR) -> list[Path]:
    """Write every media file into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "tone440_pcmu.pcap": lambda path: write_pcap(path, tone_rtp_packets(440.0, 0x0CA11E40)),
        "tone1000_pcmu.pcap": lambda path: write_pcap(path, tone_rtp_packets(1000.0, 0x0CA11EE1)),
        "tone2000_pcmu.pcap": lambda path: write_pcap(path, tone_rtp_packets(2000.0, 0x0CA11E20)),
        "dtmf_1_rfc4733.pcap": lambda path: write_pcap(path, dtmf_rtp_packets(1, 0x0D7F0001)),
        "dtmf_9_rfc4733.pcap": lambda path: write_pcap(path, dtmf_rtp_packets(9, 0x0D7F0009)),
        "tone440_8k.wav": lambda path: write_wav(path, tone_pcm(440.0, TONE_SECONDS)),
        "tone440_pcmu.ul": lambda path: path.write_bytes(
            mulaw_encode(tone_pcm(440.0, TONE_SECONDS)).tobytes()
        ),
    }
    written: list[Path] = []
    for name, write in files.items():
        path = out_dir / name
        write(path)
        written.append(path)
    return written


def main() -> None:
    for path in write_all():
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
