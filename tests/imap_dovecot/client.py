#!/usr/bin/env python3
"""IMAP client for tests/imap_dovecot.rs: drives a real Dovecot and writes
down, byte for byte, what it sent and what it received.

Usage: client.py HOST PORT USER PASSWORD OUT.json [--compress]

Four sessions, one TCP connection each:

* "imaplib": Python's imaplib. CREATE, APPEND of six messages of
  different sizes with flags and internal dates (synchronizing literals),
  SELECT, FETCH BODY[] / BODY.PEEK[] / RFC822 / BODY[HEADER] / BODY[TEXT] /
  BODY.PEEK[]<0.100> / BODY.PEEK[1] / BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)],
  UID FETCH, a FETCH of every message
  in one response, EXAMINE, LOGOUT.
* "raw": a socket client. A refused LOGIN, then LOGIN; APPEND with a
  LITERAL+ literal, a MULTIAPPEND of two LITERAL+ literals; SELECT, three
  FETCHes (one BINARY.PEEK[]) and a NOOP pipelined in one write (Dovecot
  answers them out of order); IDLE, during which "side" appends and the
  server says EXISTS, DONE; FETCH of two messages; FETCH of the new one
  with ENVELOPE (whose strings Dovecot sends as literals) and
  BODYSTRUCTURE; LOGOUT.
* "side": imaplib, LOGIN, APPEND of a message with raw UTF-8 headers,
  LOGOUT, while "raw" idles.
* "compress" (with --compress, when the server offers COMPRESS=DEFLATE):
  COMPRESS DEFLATE, then raw deflate both ways: SELECT, FETCH, a LITERAL+
  APPEND of a large message, UID FETCH of it (body and header), LOGOUT.

OUT.json: {"sessions": [...], "messages": [...]}, messages in the order
they crossed the wire, message bytes in base64. A message is a FETCH
literal (direction "fetch": mailbox, seq, uid, section as the server
labelled it, flags, internal date) or an APPEND payload (direction
"append": mailbox, flags, date, the APPENDUID uid).
"""

import base64
import imaplib
import json
import random
import re
import socket
import sys
import zlib

CRLF = b"\r\n"


def b64(b):
    return base64.b64encode(b).decode("ascii")


# ---------------------------------------------------------------- messages


def message_small():
    return (
        b"From: Alice <alice@example.test>\r\n"
        b"To: bob@example.test\r\n"
        b"Subject: small\r\n"
        b"Message-ID: <small@example.test>\r\n"
        b"\r\n"
        b"Hi Bob, a short one.\r\n"
    )


def message_medium():
    lines = [
        b"From: carol@example.test",
        b"To: alice@example.test",
        b"Subject: =?UTF-8?Q?medium_=C3=A9t=C3=A9?=",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"",
    ]
    for i in range(120):
        lines.append(
            ("Ligne %03d: l'\u00e9t\u00e9 \u00e0 la plage, caf\u00e9 cr\u00e8me "
             "et croissants, %s" % (i, "x" * (i % 40))).encode("utf-8")
        )
    return CRLF.join(lines) + CRLF


def message_large(seed, marker):
    rnd = random.Random(seed)
    blob = bytes(rnd.getrandbits(8) for _ in range(150_000))
    enc = base64.encodebytes(blob).replace(b"\n", CRLF)
    return (
        b"From: dave@example.test\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: large " + marker + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"=_b0undary\"\r\n"
        b"\r\n"
        b"This is a multi-part message in MIME format.\r\n"
        b"--=_b0undary\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"The attachment follows. " + marker + b"\r\n"
        b"--=_b0undary\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"random-" + str(seed).encode() + b".bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + enc + b"--=_b0undary--\r\n"
    )


def message_tricky():
    # Lines that look like IMAP protocol inside a literal.
    return (
        b"From: eve@example.test\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: looks like IMAP\r\n"
        b"\r\n"
        b"a1 OK LOGIN completed\r\n"
        b"* 3 FETCH (UID 9 BODY[] {12}\r\n"
        b")\r\n"
        b"A0005 APPEND INBOX {5+}\r\n"
        b"DONE\r\n"
        b".\r\n"
        b"+ go ahead\r\n"
    )


def message_no_final_crlf():
    return (
        b"From: frank@example.test\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: no CRLF at the end\r\n"
        b"\r\n"
        b"The last line has no line terminator."
    )


def message_8bit_subject():
    # Raw UTF-8 and a quote in the headers: Dovecot sends these ENVELOPE
    # strings as literals, which are not messages.
    return (
        "From: \"M\u00fcller, J\u00fcrgen\" <jm@example.test>\r\n"
        "To: alice@example.test\r\n"
        "Subject: Gr\u00fc\u00dfe aus K\u00f6ln, \"zitiert\"\r\n"
        "\r\n"
        "Appended by a second connection while the first one idles.\r\n"
    ).encode("utf-8")


def message_sent(i):
    return (
        b"From: alice@example.test\r\n"
        b"To: grace@example.test\r\n"
        b"Subject: sent copy %d\r\n"
        b"\r\n"
        b"Kept in Sent (%d).\r\n" % (i, i)
    )


# ---------------------------------------------------------------- parsing

FETCH_START = re.compile(rb"^(?:\* )?(\d+) FETCH \(", re.I)
IMAPLIB_FETCH_START = re.compile(rb"^(\d+) \(")
LITERAL_LABEL = re.compile(rb"(?:([^\s(]+) )?~?\{(\d+)\}$")
FLAGS = re.compile(rb"FLAGS \(([^)]*)\)", re.I)
UID = re.compile(rb"(?:^|[ (])UID (\d+)", re.I)
INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]*)"', re.I)
APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.I)
UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
CAPS_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.I)


def fetch_messages(responses, mailbox, command):
    """FETCH responses, each a list of (text, literal-or-None) parts, as
    message records: one per literal."""
    out = []
    for parts in responses:
        text = b"".join(t for t, _ in parts)
        m = FETCH_START.match(parts[0][0]) or IMAPLIB_FETCH_START.match(parts[0][0])
        if not m:
            raise SystemExit("not a FETCH response: %r" % parts[0][0])
        seq = int(m.group(1))
        flags = FLAGS.search(text)
        uid = UID.search(text)
        idate = INTERNALDATE.search(text)
        for t, lit in parts:
            if lit is None:
                continue
            lm = LITERAL_LABEL.search(t)
            if not lm or int(lm.group(2)) != len(lit):
                raise SystemExit("literal label not understood: %r" % t)
            out.append({
                "direction": "fetch",
                "command": command,
                "mailbox": mailbox,
                "seq": seq,
                "uid": int(uid.group(1)) if uid else None,
                # A literal that is not a FETCH item's value (a string in
                # ENVELOPE) has no label.
                "section": (lm.group(1) or b"").decode(),
                "flags": flags.group(1).decode().split() if flags else None,
                "internal_date": idate.group(1).decode() if idate else None,
                "data": b64(lit),
            })
    return out


def imaplib_responses(data):
    """imaplib's FETCH data list as responses of (text, literal) parts."""
    responses = []
    for el in data:
        if el is None:
            continue
        if isinstance(el, tuple):
            head, lit = el
            if IMAPLIB_FETCH_START.match(head) or not responses:
                responses.append([(head, lit)])
            else:
                responses[-1].append((head, lit))
        else:
            if IMAPLIB_FETCH_START.match(el) or not responses:
                responses.append([(el, None)])
            else:
                responses[-1].append((el, None))
    return responses


def append_record(mailbox, flags, date, data, resp_text):
    m = APPENDUID.search(resp_text)
    return {
        "direction": "append",
        "mailbox": mailbox,
        "flags": flags,
        "date": date,
        "uidvalidity": int(m.group(1)) if m else None,
        "uid_set": m.group(2).decode() if m else None,
        "data": b64(data),
    }


# ---------------------------------------------------------------- imaplib


class RecordingIMAP4(imaplib.IMAP4):
    """imaplib, noting every command it sends."""

    def __init__(self, *a, **kw):
        self.sent_commands = []
        super().__init__(*a, **kw)

    def _command(self, name, *args):
        if name == "UID":
            self.sent_commands.append("UID " + args[0].upper())
        else:
            self.sent_commands.append(name)
        return super()._command(name, *args)


def ok(r):
    typ, data = r
    if typ != "OK":
        raise SystemExit("unexpected %s %r" % (typ, data))
    return data


def session_imaplib(host, port, user, password, messages):
    s = {"name": "imaplib", "user": user, "login_failures": 0, "compress": False, "idle": False,
         "mailboxes": [], "uidvalidity": {}}
    M = RecordingIMAP4(host, port)
    s["client_port"] = M.sock.getsockname()[1]
    ok(M.login(user, password))
    ok(M.create("Sent"))

    def append(mailbox, flags, date, data):
        typ, resp = M.append(mailbox, "(%s)" % " ".join(flags) if flags else None,
                             ('"%s"' % date) if date else None, data)
        if typ != "OK":
            raise SystemExit("APPEND refused: %r" % resp)
        messages.append(append_record(mailbox, flags, date, data, resp[-1]))

    append("INBOX", ["\\Flagged"], "01-Feb-2024 10:20:30 +0100", message_small())
    append("INBOX", [], "15-Mar-2024 08:00:00 +0000", message_medium())
    append("INBOX", ["\\Seen", "\\Draft"], None, message_large(1, b"IMAPLIB-LARGE"))
    append("INBOX", [], None, message_tricky())
    append("INBOX", ["\\Answered"], "31-Dec-2023 23:59:59 -0500", message_no_final_crlf())
    append("Sent", ["\\Seen"], "02-Jan-2024 12:00:00 +0000", message_sent(1))

    def select(mailbox, readonly=False):
        ok(M.select(mailbox, readonly=readonly))
        s["mailboxes"].append(mailbox)
        v = M.response("UIDVALIDITY")[1]
        s["uidvalidity"][mailbox] = int(v[0])

    def fetch(mailbox, seqset, items, uid=False):
        if uid:
            data = ok(M.uid("FETCH", seqset, items))
            cmd = "UID FETCH"
        else:
            data = ok(M.fetch(seqset, items))
            cmd = "FETCH"
        messages.extend(fetch_messages(imaplib_responses(data), mailbox, cmd))

    select("INBOX")
    fetch("INBOX", "1", "(BODY[])")
    fetch("INBOX", "2", "(BODY.PEEK[])")
    fetch("INBOX", "3", "(RFC822)")
    fetch("INBOX", "4", "(BODY.PEEK[HEADER])")
    fetch("INBOX", "4", "(BODY.PEEK[TEXT])")
    fetch("INBOX", "3", "(BODY.PEEK[]<0.100>)")
    fetch("INBOX", "3", "(BODY.PEEK[1])")  # one MIME part: not a message
    # Some header fields, for all: not messages either.
    fetch("INBOX", "1:*", "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])")
    uid5 = int(UID.search(ok(M.fetch("5", "(UID)"))[0]).group(1))
    fetch("INBOX", str(uid5), "(FLAGS INTERNALDATE BODY.PEEK[])", uid=True)
    fetch("INBOX", "1:*", "(UID BODY.PEEK[])")
    # Thunderbird's way with a large message: 64 KiB pieces until one
    # comes back short. A sensor joins them into the whole message: one
    # record, BODY[], not partial.
    uid3 = int(UID.search(ok(M.fetch("3", "(UID)"))[0]).group(1))
    pieces, origin, count = [], 0, 65536
    while True:
        data = ok(M.uid("FETCH", str(uid3),
                        "(UID RFC822.SIZE BODY.PEEK[]<%d.%d>)" % (origin, count)))
        recs = fetch_messages(imaplib_responses(data), "INBOX", "UID FETCH")
        if len(recs) != 1:
            raise SystemExit("one piece expected: %r" % recs)
        piece = base64.b64decode(recs[0]["data"])
        pieces.append(piece)
        origin += len(piece)
        if len(piece) < count:
            break
    if len(pieces) < 3:
        raise SystemExit("the large message came in %d pieces" % len(pieces))
    whole = recs[0]
    whole["section"] = "BODY[]"
    whole["data"] = b64(b"".join(pieces))
    messages.append(whole)
    select("Sent", readonly=True)
    fetch("Sent", "1", "(FLAGS BODY.PEEK[])")
    typ, data = M.logout()
    s["commands"] = M.sent_commands
    return s


# ---------------------------------------------------------------- raw


class Raw:
    """An IMAP connection on a plain socket; optional raw deflate."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=20)
        self.buf = b""
        self.inflate = None
        self.deflate = None
        self.commands = []
        self.no = 0
        self.bad = 0
        self.caps = None
        self.last_tagged = None
        self.raw_in = 0

    def send(self, data):
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise SystemExit("connection closed; buffered: %r" % self.buf[-200:])
        self.raw_in += len(d)
        if self.inflate:
            d = self.inflate.decompress(d)
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(CRLF)
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        """One response: (text, literal-or-None) parts."""
        parts = []
        while True:
            line = self.line()
            m = re.search(rb"~?\{(\d+)\}$", line)
            if m:
                parts.append((line, self.exact(int(m.group(1)))))
            else:
                parts.append((line, None))
                self._note(parts)
                return parts

    def _note(self, parts):
        first = parts[0][0]
        text = b"".join(t for t, _ in parts)
        words = first.split(b" ", 2)
        if len(words) >= 2 and words[1].upper() == b"NO":
            self.no += 1
        if len(words) >= 2 and words[1].upper() == b"BAD":
            self.bad += 1
        if first.upper().startswith(b"* CAPABILITY "):
            self.caps = first[len(b"* CAPABILITY "):].decode().split()
        m = CAPS_CODE.search(text)
        if m:
            self.caps = m.group(1).decode().split()
        if not first.startswith(b"*") and not first.startswith(b"+"):
            self.last_tagged = first.split(b" ", 1)[1].decode()

    def until(self, tag):
        """Responses up to and including `tag`'s tagged one."""
        out = []
        while True:
            r = self.response()
            out.append(r)
            if r[0][0].startswith(tag + b" "):
                return out

    def command(self, tag, name, rest=b""):
        self.commands.append(name)
        self.send(tag + b" " + name.encode() + (b" " + rest if rest else b"") + CRLF)

    @staticmethod
    def status(resps, tag):
        return resps[-1][0][0][len(tag) + 1:].split(b" ", 1)[0].decode()

    def must(self, resps, tag):
        st = self.status(resps, tag)
        if st != "OK":
            raise SystemExit("%r: %r" % (tag, resps[-1]))
        return resps


def fetches_in(resps, mailbox, command):
    return fetch_messages([r for r in resps if FETCH_START.match(r[0][0])], mailbox, command)


def uidvalidity_in(resps):
    for r in resps:
        m = UIDVALIDITY.search(r[0][0])
        if m:
            return int(m.group(1))
    return None


def session_raw(host, port, user, password, messages, others):
    s = {"name": "raw", "raw": True, "user": user, "login_failures": 1, "compress": False,
         "idle": True, "mailboxes": [], "uidvalidity": {}}
    c = Raw(host, port)
    s["client_port"] = c.sock.getsockname()[1]
    c.response()  # greeting
    c.command(b"r1", "LOGIN", user.encode() + b" wrong-password")
    if c.status(c.until(b"r1"), b"r1") != "NO":
        raise SystemExit("a wrong password was accepted")
    c.command(b"r2", "LOGIN", user.encode() + b" " + password.encode())
    c.must(c.until(b"r2"), b"r2")
    if "LITERAL+" not in (c.caps or []):
        raise SystemExit("no LITERAL+ in %r" % c.caps)

    # LITERAL+ APPEND: line and literal in one write, no continuation.
    m1 = message_large(2, b"RAW-LITERAL-PLUS")
    date = "04-Apr-2024 04:04:04 +0000"
    c.commands.append("APPEND")
    c.send(b'r3 APPEND INBOX (\\Seen) "%s" {%d+}\r\n' % (date.encode(), len(m1)) + m1 + CRLF)
    r = c.must(c.until(b"r3"), b"r3")
    messages.append(append_record("INBOX", ["\\Seen"], date, m1, r[-1][0][0]))

    # MULTIAPPEND (RFC 3502), both literals LITERAL+, one write.
    m2, m3 = message_sent(2), message_sent(3)
    c.commands.append("APPEND")
    c.send(b"r4 APPEND Sent (\\Flagged) {%d+}\r\n" % len(m2) + m2 +
           b" (\\Seen \\Answered) {%d+}\r\n" % len(m3) + m3 + CRLF)
    r = c.must(c.until(b"r4"), b"r4")
    rec2 = append_record("Sent", ["\\Flagged"], None, m2, r[-1][0][0])
    rec3 = append_record("Sent", ["\\Seen", "\\Answered"], None, m3, r[-1][0][0])
    messages.extend([rec2, rec3])

    # Pipelined: five commands in one write, answers read afterwards.
    c.commands.extend(["SELECT", "FETCH", "UID FETCH", "FETCH", "NOOP"])
    c.send(b"r5 SELECT INBOX\r\n"
           b"r6 FETCH 2 (BODY.PEEK[])\r\n"
           b"r7 UID FETCH 1:3 (FLAGS BODY.PEEK[])\r\n"
           b"r8 FETCH 2 (BINARY.PEEK[] RFC822.SIZE)\r\n"
           b"r9 NOOP\r\n")
    # Dovecot runs pipelined FETCHes together: their untagged responses
    # and even the tagged ones may come in any order. Each literal is
    # recorded as it arrives.
    resps = c.until(b"r9")
    tagged = {r[0][0].split(b" ", 1)[0]: r[0][0] for r in resps if not r[0][0].startswith(b"*")}
    for tag in (b"r5", b"r6", b"r7", b"r8", b"r9"):
        if not tagged.get(tag, b"").startswith(tag + b" OK"):
            raise SystemExit("pipelined %r: %r" % (tag, tagged.get(tag)))
    s["mailboxes"].append("INBOX")
    s["uidvalidity"]["INBOX"] = uidvalidity_in(resps)
    messages.extend(fetches_in(resps, "INBOX", None))

    # IDLE; meanwhile a second connection appends a message, which the
    # idling one hears of (* n EXISTS); DONE.
    c.command(b"r10", "IDLE")
    cont = c.response()
    if not cont[0][0].startswith(b"+"):
        raise SystemExit("IDLE: %r" % cont)
    others.append(session_side(host, port, user, password))
    while True:
        r = c.response()
        if r[0][0].startswith(b"r10 "):
            raise SystemExit("IDLE ended early: %r" % r)
        m = re.match(rb"^\* (\d+) EXISTS$", r[0][0])
        if m:
            exists = int(m.group(1))
            break
    c.send(b"DONE\r\n")
    c.must(c.until(b"r10"), b"r10")

    c.command(b"r11", "FETCH", b"5:6 (BODY.PEEK[] UID)")
    messages.extend(fetches_in(c.must(c.until(b"r11"), b"r11"), "INBOX", "FETCH"))
    # The new message with ENVELOPE (its literals are not messages) and
    # BODYSTRUCTURE before the body.
    c.command(b"r12", "FETCH", b"%d (ENVELOPE BODYSTRUCTURE BODY.PEEK[] RFC822.SIZE)" % exists)
    r = c.must(c.until(b"r12"), b"r12")
    fetched = fetches_in(r, "INBOX", "FETCH")
    if not any(f["section"] != "BODY[]" for f in fetched):
        raise SystemExit("expected a literal in the ENVELOPE: %r" % r)
    messages.extend(fetched)
    c.command(b"r13", "LOGOUT")
    c.until(b"r13")
    s.update(commands=c.commands, no_responses=c.no, bad_responses=c.bad,
             capabilities=c.caps, last_response=c.last_tagged)
    return s


def session_side(host, port, user, password):
    """imaplib: APPEND one message (while session "raw" idles)."""
    s = {"name": "side", "user": user, "login_failures": 0, "compress": False, "idle": False,
         "mailboxes": [], "uidvalidity": {}}
    M = RecordingIMAP4(host, port)
    s["client_port"] = M.sock.getsockname()[1]
    ok(M.login(user, password))
    data = message_8bit_subject()
    typ, resp = M.append("INBOX", None, None, data)
    if typ != "OK":
        raise SystemExit("APPEND refused: %r" % resp)
    s["messages"] = [append_record("INBOX", [], None, data, resp[-1])]
    M.logout()
    s["commands"] = M.sent_commands
    return s


def session_compress(host, port, user, password, messages, marker):
    s = {"name": "compress", "raw": True, "user": user, "login_failures": 0, "compress": True,
         "idle": False, "mailboxes": [], "uidvalidity": {}}
    c = Raw(host, port)
    s["client_port"] = c.sock.getsockname()[1]
    c.response()
    c.command(b"z1", "LOGIN", user.encode() + b' "' + password.encode() + b'"')
    c.must(c.until(b"z1"), b"z1")
    if "COMPRESS=DEFLATE" not in (c.caps or []):
        return None
    c.command(b"z2", "COMPRESS", b"DEFLATE")
    c.must(c.until(b"z2"), b"z2")
    if c.buf:
        raise SystemExit("bytes after COMPRESS OK: %r" % c.buf)
    c.inflate = zlib.decompressobj(-15)
    c.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    before = c.raw_in

    c.command(b"z3", "SELECT", b'"INBOX"')
    r = c.must(c.until(b"z3"), b"z3")
    s["mailboxes"].append("INBOX")
    s["uidvalidity"]["INBOX"] = uidvalidity_in(r)
    c.command(b"z4", "FETCH", b"1:3 (BODY.PEEK[])")
    messages.extend(fetches_in(c.must(c.until(b"z4"), b"z4"), "INBOX", "FETCH"))
    big = message_large(3, marker)
    c.commands.append("APPEND")
    c.send(b"z5 APPEND INBOX (\\Flagged) {%d+}\r\n" % len(big) + big + CRLF)
    r = c.must(c.until(b"z5"), b"z5")
    rec = append_record("INBOX", ["\\Flagged"], None, big, r[-1][0][0])
    messages.append(rec)
    c.command(b"z6", "UID FETCH", rec["uid_set"].encode() + b" (BODY.PEEK[] BODY.PEEK[HEADER])")
    messages.extend(fetches_in(c.must(c.until(b"z6"), b"z6"), "INBOX", "UID FETCH"))
    c.command(b"z7", "LOGOUT")
    c.until(b"z7")
    s.update(commands=c.commands, no_responses=c.no, bad_responses=c.bad,
             capabilities=c.caps, last_response=c.last_tagged,
             compressed_bytes_in=c.raw_in - before)
    return s


def main():
    host, port, user, password, out = sys.argv[1:6]
    port = int(port)
    want_compress = "--compress" in sys.argv[6:]
    sessions = []
    msgs = []
    s = session_imaplib(host, port, user, password, msgs)
    s["messages"] = msgs
    sessions.append(s)
    msgs, others = [], []
    s = session_raw(host, port, user, password, msgs, others)
    s["messages"] = msgs
    sessions.append(s)
    sessions.extend(others)
    if want_compress:
        msgs = []
        s = session_compress(host, port, user, password, msgs, b"DEFLATED-MARKER-7f3a9c")
        if s is None:
            raise SystemExit("the server does not offer COMPRESS=DEFLATE")
        s["messages"] = msgs
        s["marker"] = "DEFLATED-MARKER-7f3a9c"
        sessions.append(s)
    with open(out, "w") as f:
        json.dump({"sessions": sessions}, f, indent=1)


if __name__ == "__main__":
    main()
