"""The media side of a SIPp carrier: an RTP peer that records what the gateway sends, G.711
decoding, and a pcap of RFC 4733 keys under a second SSRC for SIPp to play.

SIPp does the signalling (its scenarios point the SDP at ``RtpPeer.port``); what the
customer would hear is what arrives here, packet by packet, with its arrival time.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PCMU, PCMA, TELEPHONE_EVENT = 0, 8, 101
SILENT_PAYLOAD = {PCMU: (0xFF, 0x7F), PCMA: (0xD5, 0x55)}


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


DECODE = {PCMU: _ulaw_table(), PCMA: _alaw_table()}


@dataclass(frozen=True)
class RtpPacket:
    arrived: float  # time.monotonic()
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @property
    def silent(self) -> bool:
        quiet = SILENT_PAYLOAD.get(self.payload_type, ())
        return all(byte in quiet for byte in self.payload)


class RtpPeer:
    """A UDP socket that records every RTP packet it gets; optionally answers with tone.

    :param ringback: send a 425 Hz tone back (as a carrier's ringback would) to whoever
        sends to it, so the gateway has early media to receive
    """

    def __init__(self, ringback: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.packets: list[RtpPacket] = []
        self.remote: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._receive, daemon=True)]
        if ringback:
            self._threads.append(threading.Thread(target=self._ringback, daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.sock.close()

    def _receive(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, address = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12:
                continue
            self.remote = address
            _, marker_pt, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
            self.packets.append(
                RtpPacket(time.monotonic(), marker_pt & 0x7F, sequence, timestamp, ssrc, data[12:])
            )

    def _ringback(self) -> None:
        tone = (0.2 * np.sin(2 * np.pi * 425 * np.arange(160) / 8000) * 32767).astype(np.int16)
        table = DECODE[PCMU].astype(np.int32)
        payload = bytes(int(np.argmin(np.abs(table - s))) for s in tone)
        sequence, timestamp = 100, 8000
        while not self._stop.wait(0.02):
            if self.remote is None:
                continue
            header = struct.pack("!BBHII", 0x80, PCMU, sequence & 0xFFFF, timestamp, 0x0C0FFEE0)
            try:
                self.sock.sendto(header + payload, self.remote)
            except OSError:
                return
            sequence += 1
            timestamp += 160

    def audio(self, payload_type: int | None = None) -> tuple[np.ndarray, list[RtpPacket]]:
        """The received audio (one SSRC, in sequence order) as 16-bit samples, and its packets."""
        packets = [p for p in self.packets if p.payload_type in DECODE]
        if payload_type is not None:
            packets = [p for p in packets if p.payload_type == payload_type]
        if not packets:
            return np.zeros(0, np.int16), []
        ssrc = packets[0].ssrc
        packets = sorted((p for p in packets if p.ssrc == ssrc), key=lambda p: p.arrived)
        samples = [DECODE[p.payload_type][np.frombuffer(p.payload, np.uint8)] for p in packets]
        return np.concatenate(samples), packets


def _udp_frame(payload: bytes) -> bytes:
    """Ethernet, IPv4 and UDP headers around ``payload`` (SIPp rewrites the addresses)."""
    udp = struct.pack("!HHHH", 40000, 40002, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def write_key_pcap(path: Path, key: int = 9, audio_s: float = 2.0, key_at_s: float = 0.5) -> Path:
    """A pcap of an SBC inserting an RFC 4733 key under its own SSRC into a call's audio.

    The callee's audio (PCMU, SSRC 0x11111111) runs for ``audio_s`` in 20 ms packets; at
    ``key_at_s`` the key's events (SSRC 0x22222222) start, one between each two audio
    packets: the marked start, updates, and the end packet three times.
    """
    audio_ssrc, key_ssrc = 0x11111111, 0x22222222
    records: list[tuple[float, bytes]] = []
    for n in range(int(audio_s / 0.02)):
        header = struct.pack("!BBHII", 0x80, PCMU, (1000 + n) & 0xFFFF, 5000 + 160 * n, audio_ssrc)
        records.append((n * 0.02, header + b"\xff" * 160))
    key_sequence, key_timestamp = 7000, 90000
    for n in range(9):
        end = n >= 6
        duration = min(n + 1, 6) * 160
        marker = 0x80 if n == 0 else 0
        header = struct.pack(
            "!BBHII", 0x80, marker | TELEPHONE_EVENT, key_sequence, key_timestamp, key_ssrc
        )
        event = struct.pack("!BBH", key, (0x80 if end else 0) | 10, duration)
        records.append((key_at_s + n * 0.02 + 0.01, header + event))
        if not end:
            key_sequence += 1
    records.sort(key=lambda record: record[0])
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    start = 1_700_000_000.0
    for at, payload in records:
        frame = _udp_frame(payload)
        seconds, micros = divmod(round((start + at) * 1_000_000), 1_000_000)
        out.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path
