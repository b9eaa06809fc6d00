"""`chargegw decode`: print the tree of Diameter messages read from hex, raw bytes or a pcap.

    chargegw decode msg.hex                 # hex: whitespace, newlines and '#' comments allowed
    echo 0100... | chargegw decode -        # stdin
    chargegw decode capture.pcap --json     # pcap/pcapng: TCP reassembled, SCTP PPID 46
    chargegw decode dump.bin --validate     # raw bytes; also report what an answer would say

The input kind is detected (pcap and pcapng by their magic, hex by its characters, raw
otherwise) unless --format says. A malformed message is reported with its Result-Code and the
rest are still decoded. Exit status: 0 all decoded (and, with --validate, no faults); 1 a
message did not decode or, with --validate, had a fault; 2 unusable input.
"""

from __future__ import annotations

import argparse
import binascii
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .dictionary import ON_CONFLICT, DictionaryError, get_dictionary
from .errors import AvpError, CodecError, FramingError
from .header import DEFAULT_MAX_LENGTH, FrameReader
from .message import Message
from .pcap import CaptureError, is_capture, messages
from .present import _avp_dict


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default="-", help="a file, or - for stdin (default)")
    parser.add_argument(
        "--format", choices=("auto", "hex", "raw", "pcap"), default="auto", help="input kind"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array of messages")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="also check each message against its grammar (exit 1 when any has a fault)",
    )
    parser.add_argument("--port", type=int, help="pcap: only TCP/SCTP traffic to or from this port")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="octets")
    parser.add_argument(
        "--dict", action="append", default=[], metavar="FILE", help="load a dictionary file first"
    )
    parser.add_argument("--on-conflict", choices=ON_CONFLICT, default="error")


@dataclass(slots=True)
class Item:
    """One message as read from the input, before decoding."""

    where: str
    data: bytes | None
    error: CodecError | None = None


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")


def strip_hex(text: str) -> list[str]:
    """Non-empty lines of hex digits, comments and separators removed."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        line = re.sub(r"0x", "", line, flags=re.IGNORECASE)
        line = re.sub(r"[\s:,]", "", line)
        if line:
            out.append(line)
    return out


def looks_like_hex(data: bytes) -> bool:
    """Text (a binary message starts with octet 0x01, a control character) with hex in it."""
    if not data.strip() or _CONTROL.search(data):
        return False
    lines = strip_hex(data.decode("ascii"))
    return bool(lines) and all(c in "0123456789abcdefABCDEF" for c in lines[0])


def read_items(data: bytes, fmt: str, *, port: int | None, max_length: int) -> Iterator[Item]:
    if fmt == "auto":
        fmt = "pcap" if is_capture(data) else "hex" if looks_like_hex(data) else "raw"
    if fmt == "pcap":
        for m in messages(data, port=port, max_length=max_length):
            where = f"frame {m.frame}, {m.stream}" + (" (after a capture gap)" if m.gap else "")
            yield Item(where, m.data, m.error)
        return
    if fmt == "hex":
        lines = strip_hex(data.decode("ascii", "replace"))
        for n, line in enumerate(lines, 1):
            where = f"line {n}" if len(lines) > 1 else "input"
            try:
                raw = binascii.unhexlify(line)
            except (binascii.Error, ValueError) as exc:
                yield Item(where, None, FramingError(f"not hex: {exc}"))
                continue
            yield from _split(raw, where, max_length)
        return
    yield from _split(data, "input", max_length)


def _split(raw: bytes, where: str, max_length: int) -> Iterator[Item]:
    reader = FrameReader(max_length)
    pos = 0
    try:
        msgs = reader.feed(raw)
        for i, m in enumerate(msgs):
            yield Item(f"{where}, message {i + 1} at offset {pos}" if len(msgs) > 1 else where, m)
            pos += len(m)
        reader.eof()
    except FramingError as exc:
        yield Item(f"{where}, offset {pos + reader.buffered}", None, exc)


def decode_item(item: Item, *, validate: bool, max_length: int) -> dict[str, Any]:
    """The JSON-friendly result of one input message: its tree, or its error."""
    out: dict[str, Any] = {"where": item.where}
    if item.data is None:
        out["error"] = _error_dict(item.error)  # type: ignore[arg-type]
        return out
    try:
        msg = Message.decode(item.data, max_length=max_length)
    except CodecError as exc:
        out["error"] = _error_dict(exc)
        out["hex"] = item.data.hex()
        return out
    out["message"] = msg
    if validate:
        out["faults"] = [_error_dict(e) for e in msg.find_errors()]
    return out


def _error_dict(exc: CodecError) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": type(exc).__name__,
        "result_code": exc.result_code,
        "message": exc.error_message,
    }
    if isinstance(exc, AvpError):
        if exc.failed_avp is not None:
            d["failed_avp"] = _avp_dict(exc.failed_avp)
            d["failed_avp_hex"] = exc.failed_avp.encode().hex()
        if exc.header is not None:
            h = exc.header
            d["header"] = {
                "code": h.code,
                "application": h.app_id,
                "flags": h.flags,
                "hop_by_hop": h.hop_by_hop,
                "end_to_end": h.end_to_end,
            }
    return d


def _result_name(code: int) -> str:
    from .constants import ResultCode

    try:
        return ResultCode(code).name
    except ValueError:
        return "?"


def _text(result: dict[str, Any]) -> str:
    lines = [f"# {result['where']}"]
    err = result.get("error")
    if err is not None:
        lines.append(
            f"error {err['result_code']} ({_result_name(err['result_code'])}): {err['message']}"
        )
        if "header" in err:
            h = err["header"]
            lines.append(
                f"  header: code {h['code']}, app {h['application']}, flags 0x{h['flags']:02x}, "
                f"hbh 0x{h['hop_by_hop']:08x}, e2e 0x{h['end_to_end']:08x}"
            )
        if "failed_avp_hex" in err:
            lines.append(f"  Failed-AVP: {err['failed_avp']['name']} 0x{err['failed_avp_hex']}")
        if "hex" in result:
            lines.append(f"  message: 0x{result['hex']}")
        return "\n".join(lines)
    lines.append(result["message"].dump())
    for f in result.get("faults", []):
        fa = f" (Failed-AVP {f['failed_avp']['name']})" if "failed_avp" in f else ""
        lines.append(
            f"fault {f['result_code']} ({_result_name(f['result_code'])}): {f['message']}{fa}"
        )
    return "\n".join(lines)


def _json(result: dict[str, Any]) -> dict[str, Any]:
    m = result.pop("message", None)
    if m is not None:
        result.update(m.to_dict())
    return result


def run(args: argparse.Namespace) -> int:
    try:
        d = get_dictionary()
        for f in args.dict:
            d.load_file(f, on_conflict=args.on_conflict)
        data = sys.stdin.buffer.read() if args.input == "-" else Path(args.input).read_bytes()
    except (OSError, DictionaryError) as exc:
        print(f"chargegw decode: {exc}", file=sys.stderr)
        return 2
    bad = 0
    results = []
    try:
        for item in read_items(data, args.format, port=args.port, max_length=args.max_length):
            r = decode_item(item, validate=args.validate, max_length=args.max_length)
            bad += "error" in r or bool(r.get("faults"))
            if args.json:
                results.append(_json(r))
            else:
                print(_text(r) + "\n")
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
            sys.stdout.flush()
    except CaptureError as exc:
        print(f"chargegw decode: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    if not results and not args.json and bad == 0 and not data.strip():
        print("chargegw decode: no input", file=sys.stderr)
        return 2
    return 1 if bad else 0
