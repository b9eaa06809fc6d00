"""`chargegw decode`: hex, raw and pcap/pcapng input, text and JSON output, bad messages."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chargegw.codec.bench import load_vectors
from chargegw.codec.pcap import messages

VEC = load_vectors()
CCR, CCA = VEC["ccr_u"], VEC["cca"]


def decode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "chargegw.cli", "decode", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


# -- a small capture writer, independent of the reader under test -----------------------


def tcp(
    src: str, dst: str, sport: int, dport: int, seq: int, payload: bytes, flags: int = 0x18
) -> bytes:
    seg = struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        return (
            struct.pack(
                ">BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0, s.packed, d.packed
            )
            + seg
        )
    return struct.pack(">IHBB16s16s", 6 << 28, len(seg), 6, 64, s.packed, d.packed) + seg


def link(linktype: int, ip: bytes) -> bytes:
    v6 = ip[0] >> 4 == 6
    if linktype == 1:  # Ethernet, with a VLAN tag on IPv6 for good measure
        if v6:
            return b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x05\x86\xdd" + ip
        return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
    if linktype == 113:  # Linux cooked
        return struct.pack(">HHH8sH", 0, 772, 6, b"\x00" * 8, 0x86DD if v6 else 0x0800) + ip
    if linktype == 0:  # BSD loopback, host byte order
        return struct.pack("<I", 30 if v6 else 2) + ip
    raise AssertionError(linktype)


def pcap(linktype: int, packets: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, p in enumerate(packets):
        out += struct.pack("<IIII", 1700000000 + i, 0, len(p), len(p)) + p
    return out


def pcapng(linktype: int, packets: list[bytes]) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", linktype, 0, 65535))
    for p in packets:
        out += block(6, struct.pack("<IIIII", 0, 0, 0, len(p), len(p)) + p)
    return out


def conversation(src: str, dst: str, linktype: int) -> list[bytes]:
    """CCR in three segments (one out of order, one retransmitted), the CCA back in one."""
    a, b = 3868, 40000
    syn = tcp(src, dst, b, a, 999, b"", 0x02)
    p1, p2, p3 = CCR[:100], CCR[100:400], CCR[400:]
    pkts = [
        syn,
        tcp(src, dst, b, a, 1000, p1),
        tcp(src, dst, b, a, 1000 + 400, p3),  # arrives before p2
        tcp(src, dst, b, a, 1000 + 100, p2),
        tcp(src, dst, b, a, 1000 + 100, p2),  # retransmitted
        tcp(dst, src, a, b, 5000, CCA),
        tcp(src, dst, b, a, 1000 + len(CCR), CCA[:50]),  # a message cut off by the capture's end
    ]
    return [link(linktype, p) for p in pkts]


@pytest.mark.parametrize("linktype", [1, 113, 0])
@pytest.mark.parametrize("family", [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")])
@pytest.mark.parametrize("fmt", [pcap, pcapng])
def test_capture_reassembly(linktype: int, family: tuple[str, str], fmt: object) -> None:
    data = fmt(linktype, conversation(*family, linktype))  # type: ignore[operator]
    got = messages(data)
    assert [m.data for m in got if m.data] == [CCR, CCA]
    assert got[0].frame == 4 and got[1].frame == 6  # the frame that completed each message
    assert got[2].data is None and got[2].error.result_code == 5015 and got[2].frame == 7  # cut off
    assert got[0].stream.endswith(":3868") and "40000" in got[0].stream
    assert messages(data, port=1234) == []


def test_decode_pcap_text_and_json(tmp_path: Path) -> None:
    f = tmp_path / "c.pcap"
    f.write_bytes(pcap(1, conversation("10.0.0.1", "10.0.0.2", 1)))
    r = decode(str(f))
    assert r.returncode == 1  # the capture ends inside a third message
    text = r.stdout.decode()
    assert text.count("# frame ") == 3 and "the capture ends inside a message (50 octets" in text
    assert "Credit-Control-Request <code 272" in text and "Credit-Control-Answer <code 272" in text
    assert "CC-Total-Octets (421, M): 1048577" in text
    r = decode(str(f), "--json")
    doc = orjson.loads(r.stdout)
    assert [m["header"]["command"] for m in doc[:2]] == [
        "Credit-Control-Request",
        "Credit-Control-Answer",
    ]
    assert doc[2]["error"]["result_code"] == 5015


def test_decode_text2pcap_output(tmp_path: Path) -> None:
    if not shutil.which("text2pcap"):
        pytest.skip("text2pcap (Wireshark) is not installed")
    od = tmp_path / "od.txt"
    lines = []
    for m in (CCR, CCA):
        for off in range(0, len(m), 16):
            lines.append(f"{off:06x} " + " ".join(f"{b:02x}" for b in m[off : off + 16]))
        lines.append(f"{len(m):06x}")
    od.write_text("\n".join(lines) + "\n")
    for flag in ("pcap", "pcapng"):
        out = tmp_path / f"t.{flag}"
        subprocess.run(["text2pcap", "-q", "-F", flag, "-4", "127.0.0.1,127.0.0.2", "-T", "40000,3868", str(od), str(out)],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        assert [m.data for m in messages(out.read_bytes())] == [CCR, CCA]


def test_decode_hex_with_comments_and_a_bad_message(tmp_path: Path) -> None:
    text = (
        "# two messages, one per line, and a broken one\n"
        + " ".join(CCR[i : i + 2].hex() for i in range(0, len(CCR), 2))  # spaced
        + "  # trailing comment\n\n"
        + "0x" + CCA.hex().upper() + "\n"
        + CCA.hex()[:120] + "\n"
        + "01000014" + "00" * 16 + "zz\n"
    )  # fmt: skip
    r = decode("-", stdin=text.encode())
    out = r.stdout.decode()
    assert r.returncode == 1  # some input was bad
    assert "# line 1" in out and "# line 2" in out
    assert "Credit-Control-Request" in out and "Credit-Control-Answer" in out
    assert "error 5015 (DIAMETER_INVALID_MESSAGE_LENGTH)" in out
    r = decode("-", "--json", stdin=text.encode())
    doc = orjson.loads(r.stdout)
    assert len(doc) == 4 and doc[2]["error"]["result_code"] == 5015


def test_decode_raw_binary_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "two.bin"
    f.write_bytes(CCR + CCA)
    r = decode(str(f))
    assert r.returncode == 0 and r.stdout.decode().count("Credit-Control-") == 2
    bad = bytearray(CCA)
    struct.pack_into(">I", bad, 24, (0x40 << 24) | 900)  # Session-Id length past the end
    f.write_bytes(bytes(bad) + CCR)
    r = decode(str(f), "--validate")
    out = r.stdout.decode()
    assert r.returncode == 1
    assert "error 5014 (DIAMETER_INVALID_AVP_LENGTH)" in out and "hbh 0x00001234" in out
    assert "Failed-AVP: Session-Id" in out
    assert "Credit-Control-Request" in out  # the next message is still decoded
    assert decode(str(tmp_path / "missing")).returncode == 2


def test_decode_validate_lists_faults(tmp_path: Path) -> None:
    from chargegw.codec import Message

    m = Message.decode(CCR)
    m.remove("CC-Request-Number")
    r = decode("-", "--validate", stdin=m.encode().hex().encode())
    assert "fault 5005 (DIAMETER_MISSING_AVP): missing AVP CC-Request-Number" in r.stdout.decode()
