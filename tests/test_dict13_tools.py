"""Tools (issue 13): `chargegw decode --validate` exits non-zero on faults; `chargegw dict show`
says whether a code names an AVP or a command and filters with --avp/--command; pcap decoding
reads SCTP DATA chunks with PPID 46 (hand-built captures)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from chargegw.codec import Message
from chargegw.codec.commands import CreditControlRequest, DeviceWatchdogRequest
from chargegw.codec.pcap import messages


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "chargegw.cli", *args], input=stdin, capture_output=True,
        timeout=120,
    )  # fmt: skip


def ccr(**kw: object) -> CreditControlRequest:
    base = dict(
        session_id="gw.example.net;1;2", origin_host="gw.example.net", origin_realm="example.net",
        destination_realm="example.org", auth_application_id=4, service_context_id="32251@3gpp.org",
        cc_request_type="INITIAL_REQUEST", cc_request_number=0,
    )  # fmt: skip
    base.update(kw)
    return CreditControlRequest(**base)


# -- decode --validate -------------------------------------------------------------------


def test_decode_validate_exits_nonzero_on_faults(tmp_path: Path) -> None:
    good = ccr().encode()
    bad = ccr()
    del bad.service_context_id  # a required AVP missing: 5005
    f_good, f_bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    f_good.write_bytes(good)
    f_bad.write_bytes(bad.encode())
    assert cli("decode", str(f_bad)).returncode == 0  # it decodes: no fault asked for
    r = cli("decode", "--validate", str(f_bad))
    assert r.returncode == 1 and b"fault 5005" in r.stdout
    assert cli("decode", "--validate", str(f_good)).returncode == 0
    r = cli("decode", "--validate", "--json", str(f_bad))
    assert r.returncode == 1 and b'"faults"' in r.stdout


# -- dict show ---------------------------------------------------------------------------


def test_dict_show_says_avp_or_command() -> None:
    r = cli("dict", "show", "272")
    out = r.stdout.decode()
    assert r.returncode == 0 and "names 1 AVP(s) and" in out
    assert "AVP Multi-Round-Time-Out" in out and "Command Credit-Control" in out
    r = cli("dict", "show", "272", "--command")
    assert r.returncode == 0 and b"AVP Multi" not in r.stdout and b"Command Credit" in r.stdout
    r = cli("dict", "show", "272", "--avp")
    assert r.returncode == 0 and b"Command" not in r.stdout and b"AVP Multi" in r.stdout
    r = cli("dict", "show", "263", "--command")
    assert r.returncode == 1 and b"no command '263'" in r.stderr


# -- SCTP in pcap ------------------------------------------------------------------------


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def data_chunk(tsn: int, payload: bytes, *, sid: int = 0, ppid: int = 46, flags: int = 3) -> bytes:
    body = struct.pack(">IHHI", tsn, sid, 0, ppid) + payload
    chunk = struct.pack(">BBH", 0, flags, 4 + len(body)) + body
    return chunk + b"\0" * (-len(chunk) % 4)


def sctp_frame(chunks: list[bytes], *, src: str = "192.0.2.1", dst: str = "192.0.2.2",
               sport: int = 40000, dport: int = 3868) -> bytes:  # fmt: skip
    common = struct.pack(">HHII", sport, dport, 0x01020304, 0)
    sctp = common + b"".join(chunks)
    sctp = sctp[:8] + struct.pack("<I", _crc32c(sctp)) + sctp[12:]
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(sctp), 1, 0, 64, 132, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))  # fmt: skip
    csum = sum(struct.unpack(">10H", ip))
    csum = (csum & 0xFFFF) + (csum >> 16)
    ip = ip[:10] + struct.pack(">H", ~csum & 0xFFFF) + ip[12:]
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    return eth + ip + sctp


def pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1700000000 + i, 0, len(f), len(f)) + f
    return out


def capture() -> tuple[bytes, list[bytes]]:
    a = DeviceWatchdogRequest(origin_host="a.example.net", origin_realm="example.net").encode()
    b = ccr(hop_by_hop=7).encode()
    c = ccr(hop_by_hop=8, cc_request_number=1).encode()
    half = len(b) // 2
    frames = [
        sctp_frame([data_chunk(100, a)]),  # 1: a whole message
        sctp_frame([data_chunk(101, b[:half], flags=2)]),  # 2: first fragment (B)
        sctp_frame([data_chunk(101, b[:half], flags=2)]),  # 3: its retransmission
        sctp_frame([data_chunk(102, b[half:], flags=1),  # 4: last fragment (E) bundled with
                    data_chunk(103, b"not diameter", ppid=47),  # another protocol's chunk
                    data_chunk(104, c, sid=1)]),  # and a message on stream 1
        sctp_frame([data_chunk(7, a)], src="192.0.2.2", dst="192.0.2.1", sport=3868,
                   dport=40000),  # 5: the other direction
    ]  # fmt: skip
    return pcap(frames), [a, b, c, a]


def test_sctp_data_chunks_with_ppid_46_are_read() -> None:
    data, expected = capture()
    got = messages(data)
    assert [m.error for m in got] == [None] * 4
    assert [m.data for m in got] == expected
    assert [m.frame for m in got] == [1, 4, 4, 5]
    assert "sctp stream 1" in got[2].stream
    assert messages(data, port=3999) == []
    assert len(messages(data, port=3868)) == 4


def test_decode_cli_reads_an_sctp_capture(tmp_path: Path) -> None:
    data, expected = capture()
    f = tmp_path / "sctp.pcap"
    f.write_bytes(data)
    r = cli("decode", "--validate", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(b"# frame ") == 4
    assert r.stdout.count(b"Credit-Control") >= 2 and b"sctp stream 1" in r.stdout
    assert [Message.decode(m).hop_by_hop for m in expected[1:3]] == [7, 8]
