"""Repack a wheel smaller, and check wheels against their RECORD.

Used by bench/gpu/build_gpu_carry.sh to make ray's wheel fit the GPU machine's
64 MiB carry (bench/gpu/gpu_setup.sh says what travels and why):

    python3 bench/gpu/repack_wheel.py repack SRC.whl DEST.whl \
        --drop 'ray/jars/*' --drop 'ray/rllib/*' --drop 'ray/llm/*' \
        --drop 'ray/dashboard/*.js.map'
    python3 bench/gpu/repack_wheel.py verify A.whl B.whl ...

repack copies every member of SRC except those matching a --drop pattern
(fnmatch, where '*' also matches '/'), in SRC's order with the .dist-info
RECORD last, LZMA-compressed (zip method 14, which pip's zipfile reads), with
each member's timestamp and permissions kept. RECORD loses the rows of the
dropped members and is otherwise unchanged: the kept members are byte for
byte the same, so their hashes still hold. DEST is written beside itself and
renamed into place, so a killed run leaves no half wheel under its name.

verify tests each wheel's CRCs, and that its RECORD lists each member once
with the right sha256 and size, and no member that is not there. One line per
wheel; exit status 1 if any fails.

Errors are one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import hashlib
import io
import lzma
import os
import struct
import sys
import zipfile

# zipfile's LZMA writer uses lzma's default preset (6, an 8 MiB dictionary).
# A higher preset changes only the filter properties, which are stored in
# each member's header, so any reader decodes it. The dictionary is cut to
# the member's size (rounded up to a power of two): larger gains nothing and
# costs time, for each of a wheel's thousands of small members. Set on
# zipfile's LZMACompressor (undocumented); where that differs, zipfile's
# default stays.
_PRESET = 9 | lzma.PRESET_EXTREME
_member_size = [0]  # the size of the member being written, for _init


def _use_lzma_preset(preset: int) -> None:
    cls = getattr(zipfile, "LZMACompressor", None)
    if cls is None or not hasattr(cls, "_init"):
        return
    top = lzma._decode_filter_properties(
        lzma.FILTER_LZMA1, lzma._encode_filter_properties({"id": lzma.FILTER_LZMA1, "preset": preset})
    )["dict_size"]

    def _init(self):
        # As zipfile's own _init, with the preset's full settings for the
        # encoder; the header stores only what a decoder needs.
        size = max(4096, 1 << max(0, _member_size[0] - 1).bit_length())
        filt = {"id": lzma.FILTER_LZMA1, "preset": preset, "dict_size": min(top, size)}
        props = lzma._encode_filter_properties(filt)
        self._comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[filt])
        return struct.pack("<BBH", 9, 4, len(props)) + props

    cls._init = _init


class WheelError(Exception):
    pass


def _record_name(names: list[str]) -> str:
    records = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        raise WheelError(f"expected one top-level *.dist-info/RECORD, found {len(records)}")
    return records[0]


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(src: str, dest: str, drops: list[str], preset: int) -> tuple[int, int, int]:
    """Return (members kept, members dropped, bytes written)."""
    _use_lzma_preset(preset)
    tmp = dest + ".tmp"
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        record = _record_name([i.filename for i in infos])

        def dropped(name: str) -> bool:
            return any(fnmatch.fnmatchcase(name, pat) for pat in drops)

        gone = {i.filename for i in infos if dropped(i.filename)}
        if record in gone:
            raise WheelError(f"a --drop pattern matches {record}")
        unused = [p for p in drops if not any(fnmatch.fnmatchcase(n, p) for n in gone)]
        if unused:
            raise WheelError(f"--drop {unused[0]!r} matches no member of {os.path.basename(src)}")

        rows = list(csv.reader(io.StringIO(zin.read(record).decode("utf-8"))))
        kept_rows = [r for r in rows if r and r[0] not in gone]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(kept_rows)
        new_record = buf.getvalue().encode("utf-8")

        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zout:
                kept = 0
                for info in infos:
                    if info.filename in gone or info.filename == record:
                        continue
                    out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    out.external_attr = info.external_attr
                    out.create_system = info.create_system
                    out.compress_type = zipfile.ZIP_LZMA
                    _member_size[0] = info.file_size
                    with zin.open(info) as i, zout.open(out, "w", force_zip64=info.file_size > 2**31) as o:
                        while chunk := i.read(1 << 20):
                            o.write(chunk)
                    kept += 1
                rinfo = zin.getinfo(record)
                out = zipfile.ZipInfo(record, date_time=rinfo.date_time)
                out.external_attr = rinfo.external_attr
                out.create_system = rinfo.create_system
                out.compress_type = zipfile.ZIP_LZMA
                _member_size[0] = len(new_record)
                zout.writestr(out, new_record)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return kept + 1, len(gone), os.path.getsize(dest)


def verify(path: str) -> str:
    """Return a one-line summary; raise WheelError on the first fault."""
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WheelError(f"not a zip file: {exc}") from None
    with z:
        bad = z.testzip()
        if bad is not None:
            raise WheelError(f"bad CRC in {bad}")
        names = z.namelist()
        if len(names) != len(set(names)):
            raise WheelError("a member name occurs twice")
        record = _record_name(names)
        rows = {}
        for row in csv.reader(io.StringIO(z.read(record).decode("utf-8"))):
            if not row:
                continue
            if row[0] in rows:
                raise WheelError(f"RECORD lists {row[0]} twice")
            rows[row[0]] = row
        unsigned = {record, record + ".jws", record + ".p7s"}
        for name in names:
            if name.endswith("/"):
                continue
            row = rows.pop(name, None)
            if row is None:
                raise WheelError(f"{name} is not in RECORD")
            if name in unsigned:
                continue
            data = z.read(name)
            if len(row) < 3 or row[1] != _hash(data) or row[2] != str(len(data)):
                raise WheelError(f"{name}: RECORD's hash or size does not match the member")
        if rows:
            raise WheelError(f"RECORD lists {next(iter(rows))}, which is not in the wheel")
        methods = sorted({i.compress_type for i in z.infolist()})
    return f"{len(names)} members, RECORD matches, zip methods {methods}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("repack", help="copy a wheel without some members, LZMA-compressed")
    rp.add_argument("src")
    rp.add_argument("dest")
    rp.add_argument("--drop", action="append", default=[], metavar="PATTERN",
                    help="fnmatch pattern of members to leave out (repeatable)")
    rp.add_argument("--preset", type=int, default=_PRESET,
                    help="LZMA preset (default 9 | PRESET_EXTREME)")
    vp = sub.add_parser("verify", help="check wheels' CRCs and RECORD")
    vp.add_argument("wheels", nargs="+")
    args = ap.parse_args(argv)

    prog = "repack_wheel"
    if args.cmd == "repack":
        try:
            kept, gone, size = repack(args.src, args.dest, args.drop, args.preset)
        except (OSError, zipfile.BadZipFile, WheelError, KeyError, ValueError) as exc:
            print(f"{prog}: {os.path.basename(args.src)}: {exc}", file=sys.stderr)
            return 2
        print(f"{prog}: {os.path.basename(args.dest)}: kept {kept} members, dropped {gone}, "
              f"{size / 2**20:.1f} MiB (was {os.path.getsize(args.src) / 2**20:.1f} MiB)")
        return 0
    failed = 0
    for path in args.wheels:
        try:
            print(f"{prog}: ok   {os.path.basename(path)}: {verify(path)}")
        except (OSError, WheelError, KeyError, ValueError) as exc:
            failed += 1
            print(f"{prog}: FAIL {os.path.basename(path)}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
