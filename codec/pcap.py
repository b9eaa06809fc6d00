"""Diameter messages out of a capture file: classic pcap or pcapng, TCP or SCTP over IPv4/IPv6.

A small reader of our own (no scapy): link types Ethernet (with VLAN tags), Linux cooked
(SLL and SLL2), BSD loopback (DLT_NULL, DLT_LOOP) and raw IP; IPv4 (unfragmented packets)
and IPv6 (extension headers skipped); TCP reassembled per direction by sequence number, with
retransmitted and overlapping data dropped; SCTP DATA chunks with PPID 46 (Diameter, RFC 6733
2.1) per direction and stream, fragments joined in TSN order and retransmitted TSNs dropped;
then split into messages by FrameReader.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import FramingError
from .header import DEFAULT_MAX_LENGTH, FrameReader

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond timestamps
    b"\xa1\xb2\x3c\x4d": ">",
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = (12, 14, LINKTYPE_RAW)


class CaptureError(ValueError):
    """The file is not a capture this reader understands."""


def is_capture(data: bytes) -> bool:
    return data[:4] in PCAP_MAGICS or data[:4] == PCAPNG_MAGIC


@dataclass(slots=True)
class Frame:
    number: int  # 1-based, as Wireshark counts
    linktype: int
    data: bytes


def frames(data: bytes) -> Iterator[Frame]:
    """Every captured frame of a pcap or pcapng file."""
    if data[:4] in PCAP_MAGICS:
        yield from _pcap_frames(data)
    elif data[:4] == PCAPNG_MAGIC:
        yield from _pcapng_frames(data)
    else:
        raise CaptureError("not a pcap or pcapng file")


def _pcap_frames(data: bytes) -> Iterator[Frame]:
    e = PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise CaptureError("pcap global header truncated")
    linktype = struct.unpack_from(e + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(e + "IIII")
    pos = 24
    n = 0
    while pos + 16 <= len(data):
        _, _, incl, _ = rec.unpack_from(data, pos)
        pos += 16
        if incl > len(data) - pos:
            break  # a truncated last record
        n += 1
        yield Frame(n, linktype, data[pos : pos + incl])
        pos += incl


def _pcapng_frames(data: bytes) -> Iterator[Frame]:
    pos = 0
    e = "<"
    links: list[int] = []
    n = 0
    while pos + 12 <= len(data):
        btype_raw = data[pos : pos + 4]
        if btype_raw == PCAPNG_MAGIC:  # Section Header Block: its byte-order magic sets e
            bom = data[pos + 8 : pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                raise CaptureError("pcapng section header with a bad byte-order magic")
            links = []
        btype, blen = struct.unpack_from(e + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > len(data):
            break  # truncated or corrupt: stop here
        body = data[pos + 8 : pos + blen - 4]
        if btype == 1 and len(body) >= 2:  # Interface Description Block
            links.append(struct.unpack_from(e + "H", body, 0)[0])
        elif btype == 6 and len(body) >= 20:  # Enhanced Packet Block
            iface, _, _, caplen, _ = struct.unpack_from(e + "IIIII", body, 0)
            if iface < len(links):
                n += 1
                yield Frame(n, links[iface], body[20 : 20 + caplen])
        elif btype == 3 and len(body) >= 4 and links:  # Simple Packet Block
            orig = struct.unpack_from(e + "I", body, 0)[0]
            n += 1
            yield Frame(n, links[0], body[4 : 4 + orig])
        elif btype == 2 and len(body) >= 20:  # Packet Block (obsolete)
            iface = struct.unpack_from(e + "H", body, 0)[0]
            caplen = struct.unpack_from(e + "I", body, 12)[0]
            if iface < len(links):
                n += 1
                yield Frame(n, links[iface], body[20 : 20 + caplen])
        pos += blen


def ip_packet(linktype: int, data: bytes) -> bytes | None:
    """The IP packet a frame carries, or None (ARP, other protocols, unknown link types)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        etype = struct.unpack_from(">H", data, 12)[0]
        pos = 14
        while etype in (0x8100, 0x88A8, 0x9100) and len(data) >= pos + 4:  # VLAN tags
            etype = struct.unpack_from(">H", data, pos + 2)[0]
            pos += 4
        return data[pos:] if etype in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        proto = struct.unpack_from(">H", data, 14)[0]
        return data[16:] if proto in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        proto = struct.unpack_from(">H", data, 0)[0]
        return data[20:] if proto in (0x0800, 0x86DD) else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        return data[4:]  # the family word's byte order varies: the IP version nibble decides
    if linktype in _RAW_ALIASES:
        return data
    return None


@dataclass(slots=True)
class Segment:
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    syn: bool
    fin: bool
    payload: bytes


def tcp_segment(packet: bytes) -> Segment | None:
    """The TCP segment in an IPv4 or IPv6 packet (None for anything else)."""
    ip = ip_payload(packet)
    if ip is None or ip[2] != IPPROTO_TCP:
        return None
    src, dst, _, tcp = ip
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack_from(">HHI", tcp, 0)
    off = (tcp[12] >> 4) * 4
    flags = tcp[13]
    if off < 20 or off > len(tcp):
        return None
    return Segment(src, dst, sport, dport, seq, bool(flags & 0x02), bool(flags & 0x01), tcp[off:])


IPPROTO_TCP = 6
IPPROTO_SCTP = 132
PPID_DIAMETER = 46  # IANA SCTP payload protocol identifier for Diameter (RFC 6733 2.1)


def ip_payload(packet: bytes) -> tuple[str, str, int, bytes] | None:
    """(source, destination, protocol, payload) of an unfragmented IPv4 or IPv6 packet."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return None
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from(">H", packet, 2)[0]
        frag = struct.unpack_from(">H", packet, 6)[0]
        if frag & 0x3FFF or ihl < 20:  # a fragment (not reassembled), or a bad header
            return None
        src = str(ipaddress.IPv4Address(packet[12:16]))
        dst = str(ipaddress.IPv4Address(packet[16:20]))
        return src, dst, packet[9], packet[ihl : total if total >= ihl else len(packet)]
    elif version == 6:
        if len(packet) < 40:
            return None
        plen = struct.unpack_from(">H", packet, 4)[0]
        nh = packet[6]
        src = f"[{ipaddress.IPv6Address(packet[8:24])}]"
        dst = f"[{ipaddress.IPv6Address(packet[24:40])}]"
        rest = packet[40 : 40 + plen] if plen else packet[40:]
        while nh in (0, 43, 60, 51) and len(rest) >= 8:  # hop-by-hop, routing, dest opts, AH
            hlen = (rest[1] + 2) * 4 if nh == 51 else (rest[1] + 1) * 8
            nh = rest[0]
            rest = rest[hlen:]
        if nh == 44:  # a fragment header: fragments are not reassembled
            return None
        return src, dst, nh, rest
    return None


def sctp_data(packet: bytes) -> Iterator[tuple[str, int, str, int, int, int, int, bytes]]:
    """The Diameter DATA chunks of an SCTP packet: (src, sport, dst, dport, stream, TSN,
    flags, user data). Chunks of other types or payload protocols are skipped."""
    ip = ip_payload(packet)
    if ip is None or ip[2] != IPPROTO_SCTP or len(ip[3]) < 12:
        return
    src, dst, _, sctp = ip
    sport, dport = struct.unpack_from(">HH", sctp, 0)
    pos = 12
    while pos + 4 <= len(sctp):
        ctype, cflags, clen = struct.unpack_from(">BBH", sctp, pos)
        if clen < 4 or pos + clen > len(sctp):
            return  # a truncated or malformed chunk: nothing after it can be trusted
        if ctype == 0 and clen >= 16:  # DATA (RFC 9260 3.3.1)
            tsn, sid, _ssn, ppid = struct.unpack_from(">IHHI", sctp, pos + 4)
            if ppid == PPID_DIAMETER:
                yield src, sport, dst, dport, sid, tsn, cflags, sctp[pos + 16 : pos + clen]
        pos += (clen + 3) & ~3


@dataclass
class Stream:
    """One direction of a TCP connection."""

    key: tuple[str, int, str, int]
    first_frame: int
    isn: int | None = None
    segments: list[tuple[int, int, bytes]] = field(default_factory=list)  # (seq, frame, data)

    @property
    def label(self) -> str:
        s, sp, d, dp = self.key
        return f"{s}:{sp} -> {d}:{dp}"


@dataclass(slots=True)
class CapturedMessage:
    frame: int  # the frame that completed the message
    stream: str
    data: bytes | None  # None with `error` set: the stream could not be split from here on
    error: FramingError | None = None
    gap: bool = False


def streams(data: bytes, port: int | None = None) -> list[Stream]:
    """TCP streams of a capture, per direction, in order of first appearance."""
    out: dict[tuple[str, int, str, int], Stream] = {}
    for fr in frames(data):
        pkt = ip_packet(fr.linktype, fr.data)
        seg = tcp_segment(pkt) if pkt is not None else None
        if seg is None or (port is not None and port not in (seg.sport, seg.dport)):
            continue
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        st = out.get(key)
        if st is None:
            st = out[key] = Stream(key, fr.number)
        if seg.syn:
            st.isn = seg.seq
        if seg.payload:
            st.segments.append((seg.seq, fr.number, seg.payload))
    return list(out.values())


def messages(
    data: bytes, *, port: int | None = None, max_length: int = DEFAULT_MAX_LENGTH
) -> list[CapturedMessage]:
    """Every Diameter message in a capture (TCP and SCTP), ordered by the frame that
    completed it.

    A stream whose bytes do not frame as Diameter yields one entry with the FramingError and
    nothing more (there is no way to find the next header), until a gap in the capture.
    """
    out: list[CapturedMessage] = []
    for st in streams(data, port):
        out += _stream_messages(st, max_length)
    out += sctp_messages(data, port=port, max_length=max_length)
    out.sort(key=lambda m: m.frame)
    return out


def sctp_messages(
    data: bytes, *, port: int | None = None, max_length: int = DEFAULT_MAX_LENGTH
) -> list[CapturedMessage]:
    """Diameter messages of the SCTP associations in a capture: each direction and stream's
    user messages (B..E fragments joined in TSN order), split by FrameReader."""
    seen: set[tuple[str, int, str, int, int]] = set()  # (direction, TSN): retransmissions
    parts: dict[tuple[str, int, str, int, int], list[tuple[int, int, int, bytes]]] = {}
    readers: dict[tuple[str, int, str, int, int], FrameReader] = {}
    broken: set[tuple[str, int, str, int, int]] = set()
    out: list[CapturedMessage] = []
    for fr in frames(data):
        pkt = ip_packet(fr.linktype, fr.data)
        if pkt is None:
            continue
        for src, sport, dst, dport, sid, tsn, flags, user in sctp_data(pkt):
            if port is not None and port not in (sport, dport):
                continue
            if (src, sport, dst, dport, tsn) in seen:
                continue
            seen.add((src, sport, dst, dport, tsn))
            key = (src, sport, dst, dport, sid)
            label = f"{src}:{sport} -> {dst}:{dport} sctp stream {sid}"
            pending = parts.setdefault(key, [])
            pending.append((tsn, flags, fr.number, user))
            whole = _sctp_user_message(pending)
            if whole is None or key in broken:
                continue
            reader = readers.setdefault(key, FrameReader(max_length))
            try:
                out += [CapturedMessage(fr.number, label, m) for m in reader.feed(whole)]
            except FramingError as exc:
                out.append(CapturedMessage(fr.number, label, None, exc))
                broken.add(key)
    for key, reader in readers.items():
        if reader.buffered and key not in broken:
            s, sp, d, dp, sid = key
            out.append(_cut(0, f"{s}:{sp} -> {d}:{dp} sctp stream {sid}", reader.buffered, False))
    return out


def _sctp_user_message(pending: list[tuple[int, int, int, bytes]]) -> bytes | None:
    """The user message that `pending` (fragments of one stream) completes, removed from it;
    None while fragments are missing. Flags: B (0x02) first fragment, E (0x01) last."""
    pending.sort(key=lambda p: p[0])
    for i, (_, flags, _, _) in enumerate(pending):
        if not flags & 0x02:
            continue
        j = i
        while not pending[j][1] & 0x01:
            if j + 1 == len(pending) or pending[j + 1][0] != (pending[j][0] + 1) & 0xFFFFFFFF:
                break
            j += 1
        else:
            whole = b"".join(p[3] for p in pending[i : j + 1])
            del pending[i : j + 1]
            return whole
    return None


def _stream_messages(st: Stream, max_length: int) -> list[CapturedMessage]:
    if not st.segments:
        return []
    base = (st.isn + 1) if st.isn is not None else st.segments[0][0]
    segs = sorted(
        ((seq - base) & 0xFFFFFFFF, frame, payload) for seq, frame, payload in st.segments
    )
    out: list[CapturedMessage] = []
    reader = FrameReader(max_length)
    broken = False
    nxt = segs[0][0]
    fed = 0  # stream octets fed to the reader since the last gap
    spans: list[tuple[int, int, int]] = []  # (start, end, frame) of what was fed
    done = 0  # octets of complete messages handed out
    gap = False
    for rel, frame, payload in segs:
        if rel + len(payload) <= nxt:
            continue  # a retransmission
        if rel > nxt:  # octets missing from the capture: start afresh after the gap
            if reader.buffered and not broken:
                out.append(_cut(frame, st.label, reader.buffered, gap))
            reader = FrameReader(max_length)
            broken = False
            gap = True
            fed = done = 0
            spans = []
            nxt = rel
        if rel < nxt:
            payload = payload[nxt - rel :]
        nxt += len(payload)
        if broken:
            continue
        spans.append((fed, fed + len(payload), frame))
        fed += len(payload)
        try:
            for msg in reader.feed(payload):
                start, done = done, done + len(msg)
                # the frame that completed it: the latest frame among those that carried it
                fr = max(f for s0, s1, f in spans if s0 < done and s1 > start)
                out.append(CapturedMessage(fr, st.label, msg, gap=gap))
                gap = False
        except FramingError as exc:
            out.append(CapturedMessage(frame, st.label, None, exc, gap))
            broken = True
    if reader.buffered and not broken:
        out.append(_cut(spans[-1][2] if spans else 0, st.label, reader.buffered, gap))
    return out


def _cut(frame: int, label: str, left: int, gap: bool) -> CapturedMessage:
    err = FramingError(f"the capture ends inside a message ({left} octets of it seen)", 5015)
    return CapturedMessage(frame, label, None, err, gap)
