#!/usr/bin/env python3
"""Generate the optional vendor dictionaries: codec/dictionaries/vendor_<name>.json.

They are not loaded by default (the built-in files are); a configuration loads one by name:

    [dictionaries]
    files = ["vendor:starent", "vendor:cisco"]

The facts come from Wireshark's vendor dictionary XML (/usr/share/wireshark/diameter), read
by chargegw's own importer (codec/wireshark.py) on top of the built-in dictionary, so every
file loads conflict-free over the built-in one and beside every other vendor file (checked
here). Run after the built-in dictionaries change:

    python tools/gen_vendor_dictionaries.py            # rewrite the files
    python tools/gen_vendor_dictionaries.py --check    # exit 1 if one is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "codec" / "dictionaries"
WS_DIR = Path("/usr/share/wireshark/diameter")

# name -> the Wireshark files it holds (one vendor company each)
VENDORS: dict[str, tuple[str, ...]] = {
    "alcatel-lucent": ("AlcatelLucent.xml",),
    "cisco": ("Cisco.xml", "CiscoSystems.xml"),
    "ericsson": ("Ericsson.xml",),
    "hp": ("HP.xml",),
    "huawei": ("Huawei.xml",),
    "inovar": ("Inovar.xml",),
    "juniper": ("Juniper.xml",),
    "metaswitch": ("Metaswitch.xml",),
    "microsoft": ("Microsoft.xml",),
    "nokia": ("Nokia.xml", "NokiaSolutionsAndNetworks.xml"),
    "oracle": ("Oracle.xml",),
    "siemens": ("Siemens.xml",),
    "starent": ("Starent.xml",),
    "sun": ("sunping.xml",),
    "telefonica": ("Telefonica.xml",),
    "verizon": ("VerizonWireless.xml",),
    "vodafone": ("Vodafone.xml",),
}


def build(name: str, files: tuple[str, ...], ws_dir: Path) -> tuple[bytes, list[str]]:
    from chargegw.codec.cli_dict import export_json
    from chargegw.codec.dictionary import load_builtin

    d = load_builtin()
    avps0, cmds0 = set(d.avps), set(d.commands)
    for f in files:
        d.import_wireshark(ws_dir / f)
    avps = [a for k, a in d.avps.items() if k not in avps0]
    cmds = [c for k, c in d.commands.items() if k not in cmds0]
    source = ", ".join(f"Wireshark {f}" for f in files)
    doc = export_json(d, avps, cmds, f"vendor_{name}", source)
    doc["title"] = f'{name} vendor-specific AVPs (optional: load as "vendor:{name}")'
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n", list(d.conflicts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--wireshark-dir", type=Path, default=WS_DIR)
    args = ap.parse_args(argv)
    from chargegw.codec.dictionary import load_builtin

    stale = []
    texts = {}
    for name, files in VENDORS.items():
        text, report = build(name, files, args.wireshark_dir)
        texts[name] = text
        path = OUT_DIR / f"vendor_{name}.json"
        for line in report:
            print(f"  {name}: {line}")
        if not path.is_file() or path.read_bytes() != text:
            stale.append(path.name)
            if not args.check:
                path.write_bytes(text)
    every = load_builtin()  # all of them at once, strictly
    for name in VENDORS:
        every.load_json(OUT_DIR / f"vendor_{name}.json", texts[name])
    print(f"{len(VENDORS)} vendor dictionaries, {len(every.avps)} AVPs with the built-in ones")
    if stale and args.check:
        print(f"out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    if stale:
        print(f"wrote {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
