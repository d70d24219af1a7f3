#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/: seed inputs for every cargo-fuzz target, in
each target's own input format, made from captures `mailtap gen` writes
(plain SMTP, pipelining, BDAT, POP3, STARTTLS with recorded real TLS
handshakes, a capture cut mid-traffic) and from what `mailtap read` makes of
them (extracted messages, ACE transcripts). Seeds start the fuzzer deep
inside the protocols instead of at random bytes.

    python3 scripts/fuzz-seeds.py [path/to/mailtap]

Deterministic: the same binary writes the same seeds. The seeds are
committed; scripts/fuzz.sh hands them to each run beside its corpus.
"""

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
MAX_SEED = 16 * 1024  # bytes per seed: small inputs fuzz faster
PER_TARGET = 40  # seeds per target at most


def pcap_frames(path):
    """(ts, frame) of a classic little-endian pcap file."""
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), "classic little-endian pcap expected"
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def tcp_of(frame):
    """(src, sport, dst, dport, flags, payload) of an Ethernet/IP/TCP frame."""
    et = struct.unpack(">H", frame[12:14])[0]
    p = frame[14:]
    if et == 0x0800:
        ihl = (p[0] & 15) * 4
        if p[9] != 6:
            return None
        total = struct.unpack(">H", p[2:4])[0]
        src, dst, t = p[12:16], p[16:20], p[ihl:total]
    elif et == 0x86DD:
        if p[6] != 6:
            return None
        plen = struct.unpack(">H", p[4:6])[0]
        src, dst, t = p[8:24], p[24:40], p[40:40 + plen]
    else:
        return None
    sport, dport = struct.unpack(">HH", t[:4])
    doff = (t[12] >> 4) * 4
    return src, sport, dst, dport, t[13], t[doff:]


def conversations(path, server_ports):
    """Per connection, in order: (from_server, payload) pieces."""
    convs = {}
    order = []
    for f in pcap_frames(path):
        t = tcp_of(f)
        if not t:
            continue
        src, sport, dst, dport, _, payload = t
        if dport in server_ports:
            key, from_server = (src, sport, dst, dport), False
        elif sport in server_ports:
            key, from_server = (dst, dport, src, sport), True
        else:
            continue
        if key not in convs:
            convs[key] = []
            order.append(key)
        if payload:
            convs[key].append((from_server, payload))
    return [convs[k] for k in order]


def pieces(conv, limit=MAX_SEED):
    """The analyzer targets' format: a control byte (bit 7: server side,
    low 6 bits: length) then up to 63 bytes, per piece."""
    out = bytearray()
    for from_server, payload in conv:
        for i in range(0, len(payload), 63):
            chunk = payload[i:i + 63]
            piece = bytes([(0x80 if from_server else 0) | len(chunk)]) + chunk
            if len(out) + len(piece) > limit:
                return bytes(out)
            out += piece
    return bytes(out)


class Seeds:
    def __init__(self):
        self.by_target = {}

    def add(self, target, data):
        if not data or len(data) > MAX_SEED:
            data = data[:MAX_SEED]
        s = self.by_target.setdefault(target, {})
        if len(s) < PER_TARGET:
            s[hashlib.sha1(data).hexdigest()] = data

    def write(self):
        if os.path.isdir(SEEDS):
            shutil.rmtree(SEEDS)
        total = 0
        for target, seeds in sorted(self.by_target.items()):
            d = os.path.join(SEEDS, target)
            os.makedirs(d)
            for name, data in sorted(seeds.items()):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
                total += len(data)
            print(f"fuzz-seeds: {target}: {len(seeds)} seeds")
        print(f"fuzz-seeds: {total} bytes in {SEEDS}")


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    mailtap = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "mailtap")
    seeds = Seeds()
    tmp = tempfile.mkdtemp(prefix="mailtap-seeds-")
    try:
        caps = {
            "small": ["--mix", "small", "--sessions", "24", "--pop3-percent", "40"],
            "attach": ["--mix", "attach", "--sessions", "6"],
            "mta": ["--mix", "mta", "--sessions", "12"],
            "cut": ["--mix", "small", "--sessions", "24", "--pop3-percent", "40", "--cut", "40%",
                    "--drop-handshake", "20"],
        }
        for name, args in caps.items():
            cap = os.path.join(tmp, name + ".pcap")
            run([mailtap, "gen", "-o", cap, "--seed", "7", "--concurrency", "4"] + args)
            frames = list(pcap_frames(cap))
            # wire_reader: whole small captures, plain and gzipped.
            head = open(cap, "rb").read()[:MAX_SEED]
            seeds.add("wire_reader", head)
            seeds.add("wire_reader", gzip.compress(head, mtime=0))
            # wire_decode: the selector's value mod 5 picks the link type
            # (0: Ethernet), bit 7 verifies checksums (0x82: both); frames
            # joined at 0xfe where the frame has none.
            for i in range(0, min(len(frames), 200), 10):
                batch = [f for f in frames[i:i + 4] if 0xFE not in f]
                sel = 0x82 if i % 20 == 0 else 0x00
                seeds.add("wire_decode", bytes([sel]) + b"\xfe".join(batch))
            # shard_packets: 2-byte little-endian length then the frame.
            for i in range(0, min(len(frames), 400), 60):
                buf = bytearray()
                for f in frames[i:i + 60]:
                    if len(buf) + 2 + len(f) > MAX_SEED:
                        break
                    buf += struct.pack("<H", len(f)) + f
                seeds.add("shard_packets", bytes(buf))
            for conv in conversations(cap, {25, 587})[:10]:
                seeds.add("smtp_analyzer", b"\x00" + pieces(conv))
                # Mid-stream: odd mode byte, the first pieces left out.
                seeds.add("smtp_analyzer", b"\x01" + pieces(conv[len(conv) // 3:]))
            for conv in conversations(cap, {110})[:10]:
                seeds.add("pop3_analyzer", b"\x00" + pieces(conv))
                seeds.add("pop3_analyzer", b"\x01" + pieces(conv[len(conv) // 3:]))
            # tls_analyzer: the part of a STARTTLS session after the 220
            # that answers STARTTLS.
            for conv in conversations(cap, {25, 587}):
                for i, (from_server, p) in enumerate(conv):
                    if from_server and p.startswith(b"220 ") and i > 1 and b"TLS" in p.upper():
                        seeds.add("tls_analyzer", pieces(conv[i + 1:]))
                        break
            # Extracted messages (mime_message: control byte 1, extraction
            # on) and ACE transcripts (ace_transcript, ace_collect).
            ex, ace, logs = (os.path.join(tmp, name + d) for d in ("-ex", "-ace", "-logs"))
            os.makedirs(ace)
            run([mailtap, "read", "--no-progress", "-o", logs, "--extract-dir", ex,
                 "--ace-dir", ace, "--set", "general.uid_salt=seeds", cap])
            for f in sorted(os.listdir(ex))[:30]:
                if f.endswith(".eml"):
                    body = open(os.path.join(ex, f), "rb").read()
                    seeds.add("mime_message", b"\x03" + body)
            for f in sorted(os.listdir(ace))[:30]:
                p = os.path.join(ace, f)
                if os.path.isfile(p) and not f.endswith(".ready"):
                    data = open(p, "rb").read()
                    seeds.add("ace_transcript", data)
                    seeds.add("ace_collect", data)
        # mime_sniff: the openings of common attachment types (published
        # magic numbers).
        for magic in [b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", b"PK\x03\x04\x14\x00\x06\x00\x08\x00",
                      b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a\x01\x00\x01\x00",
                      b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"{\\rtf1\\ansi", b"<!DOCTYPE html><html>",
                      b"MZ\x90\x00\x03\x00", b"\x7fELF\x02\x01\x01", b"%!PS-Adobe-3.0",
                      b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\x1f\x8b\x08\x00", b"BEGIN:VCALENDAR\r\n",
                      b"Rar!\x1a\x07\x01\x00", b"7z\xbc\xaf\x27\x1c", b"<?xml version=\"1.0\"?>"]:
            seeds.add("mime_sniff", magic)
        seeds.write()
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
