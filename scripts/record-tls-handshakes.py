#!/usr/bin/env python3
"""Records the real TLS handshakes that mailtap-gen replays (issue 10, item 3).

Run once, as any user, on a machine with Debian's `openssl` (3.0) and a
Python 3 with the `cryptography` package (`pip install cryptography`):

    python3 scripts/record-tls-handshakes.py

What it does, all on loopback (127.0.0.1, ephemeral ports):

1. Makes fresh certificate chains with `cryptography` (root CA -> intermediate
   CA -> leaf, SANs on every leaf): an RSA-2048 server chain, an ECDSA P-256
   server chain, an RSA client chain, and a self-signed "rogue" server
   certificate. Validity 2024-01-01 .. 2034-01-01. Keys never leave a
   temporary directory; the public certificates are written to
   `crates/mailtap-gen/tls/certs/`.
2. For each handshake, starts a real server (`openssl s_server`, or Python's
   `ssl` module in a thread) and a real client (`openssl s_client -msg
   -showcerts`), with a recording TCP proxy between them. The proxy records
   every chunk it relays, per direction, in the order it received them, before
   forwarding it; consecutive chunks of one direction are merged into one
   flight. Once the client reports the handshake done (or failed) and a short
   settle time has passed (so TLS 1.3 session tickets are through), the
   recording is cut: what follows (application data, close_notify) is not
   kept; the generator makes its own.
3. Takes the truth from the peers, never from mailtap: version, cipher, curve
   (`Server Temp Key`), `New`/`Reused`, ALPN and the alerts from `s_client`'s
   output; the server's certificate chain from `-showcerts` (checked against
   the files), the client chain from the files passed to `s_client`; where the
   server is Python, `SSLSocket.version()/cipher()/selected_alpn_protocol()`
   must agree with `s_client`. For a handshake that fails before the client
   learns the cipher (`alert_unknown_ca`), version, cipher and curve are the
   only ones the server's configuration allowed, confirmed by a control
   handshake against the same server with a client that does not verify.
4. Writes `crates/mailtap-gen/tls/<name>.bin` (the flights), `truth.json`
   (everything known about each handshake, human readable) and `fixtures.rs`
   (the same truth as Rust statics with `include_bytes!`, included by
   `crates/mailtap-gen/src/session/tls.rs`).

Fixture format (`<name>.bin`): a sequence of flights, each
`direction (1 byte: 'C' client->server, 'S' server->client) | length (u32
big-endian) | bytes`, nothing else; flights alternate in direction.

Idempotent: every run replaces all outputs (with fresh keys, so fingerprints
change together with the fixtures). Truth conventions follow Zeek's ssl.log:
`cert_chain_fps` lists the certificates the server sent in the clear (none in
TLS 1.3, where the Certificate message is encrypted, and none in a resumed
TLS 1.2 handshake); `curve` is unset when no key exchange happened (resumed
TLS 1.2) or nothing was negotiated.
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "crates", "mailtap-gen", "tls")
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2034, 1, 1, tzinfo=datetime.timezone.utc)

RSA_NAME = "mx.rsa.mailtap.example"
ECDSA_NAME = "mx.ecdsa.mailtap.example"

# OpenSSL's curve names in `Server Temp Key` -> Zeek's names.
CURVES = {"X25519": "x25519", "prime256v1": "secp256r1", "secp384r1": "secp384r1",
          "X448": "x448", "secp521r1": "secp521r1"}
VERSIONS = {"TLSv1.2": "TLSv12", "TLSv1.3": "TLSv13"}


# ------------------------------------------------------------------ certificates

def name(cn, org):
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def make_cert(subject, key, issuer_name, issuer_key, ca, sans=(), client=False, path_len=None):
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                            critical=True)
    else:
        eku = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                                critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def key_pem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def chain(tmp, label, keyf, org, leaf_cn, sans, client=False):
    """root -> intermediate -> leaf; writes the files, returns their paths and certs."""
    rk, ik, lk = keyf(), keyf(), keyf()
    rn = name(f"mailtap test {label} root CA", org)
    root = make_cert(rn, rk, rn, rk, True, path_len=1)
    iname = name(f"mailtap test {label} intermediate CA", org)
    inter = make_cert(iname, ik, rn, rk, True, path_len=0)
    leaf = make_cert(name(leaf_cn, org), lk, iname, ik, False, sans, client=client)
    p = {k: os.path.join(tmp, f"{label}-{k}.pem") for k in ("root", "inter", "leaf", "key")}
    write(p["root"], pem(root))
    write(p["inter"], pem(inter))
    write(p["leaf"], pem(leaf))
    write(p["key"], key_pem(lk))
    p["fullchain"] = os.path.join(tmp, f"{label}-fullchain.pem")
    write(p["fullchain"], pem(leaf) + pem(inter))
    return p, [leaf, inter]


def fp(cert):
    return cert.fingerprint(hashes.SHA256()).hex()


def openssl_subject(cert, field):
    """The subject/issuer as OpenSSL prints it in RFC 2253 form (what Zeek logs)."""
    out = subprocess.run([OPENSSL, "x509", "-noout", f"-{field}", "-nameopt", "RFC2253"],
                         input=pem(cert), capture_output=True, check=True).stdout.decode()
    return out.strip().split("=", 1)[1]


# ------------------------------------------------------------------ recording

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Proxy:
    """Relays one TCP connection to `target`, recording each chunk before forwarding it."""

    def __init__(self, target):
        self.target = target
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.chunks = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        c, _ = self.ls.accept()
        s = socket.create_connection(("127.0.0.1", self.target))
        for sock in (c, s):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        a = threading.Thread(target=self.pump, args=(c, s, "C"), daemon=True)
        b = threading.Thread(target=self.pump, args=(s, c, "S"), daemon=True)
        a.start()
        b.start()
        a.join()
        b.join()
        c.close()
        s.close()
        self.ls.close()

    def pump(self, src, dst, d):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                self.chunks.append((d, data))
            try:
                dst.sendall(data)
            except OSError:
                return

    def mark(self):
        with self.lock:
            return len(self.chunks)

    def flights(self, upto):
        out = []
        with self.lock:
            for d, data in self.chunks[:upto]:
                if out and out[-1][0] == d:
                    out[-1][1] += data
                else:
                    out.append([d, bytearray(data)])
        return [(d, bytes(b)) for d, b in out]


class SServer:
    """`openssl s_server` accepting `n` connections."""

    def __init__(self, args, n=1):
        self.port = free_port()
        self.p = subprocess.Popen(
            [OPENSSL, "s_server", "-accept", f"127.0.0.1:{self.port}", "-naccept", str(n)] + args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = []
        while True:
            line = self.p.stdout.readline()
            seen.append(line)
            if b"ACCEPT" in line:
                break
            if not line:
                raise RuntimeError(f"s_server did not start: {seen!r}")
        # keep draining its output so it never blocks on a full pipe
        threading.Thread(target=self.p.stdout.read, daemon=True).start()

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        return ""


class PyServer:
    """Python `ssl` server in a thread: one connection, reports what it negotiated."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.info = {}
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        c, _ = self.ls.accept()
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
            self.info = {"version": s.version(), "cipher": s.cipher()[0],
                         "alpn": s.selected_alpn_protocol()}
            try:
                while s.recv(4096):
                    pass
            except (ssl.SSLError, OSError):
                pass
            s.close()
        except (ssl.SSLError, OSError) as e:
            self.info = {"error": str(e)}
            c.close()
        self.ls.close()

    def close(self):
        self.t.join(5)
        return self.info


def s_client(port, args, settle=0.6):
    """Starts s_client against `port` and waits `settle` seconds (handshake and tickets done)."""
    out = tempfile.TemporaryFile()
    p = subprocess.Popen([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-msg",
                          "-showcerts"] + args,
                         stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    p.out = out
    time.sleep(settle)
    return p


def finish_client(p):
    """Closes s_client's stdin (it sends close_notify and exits); returns its output."""
    try:
        p.stdin.close()
    except OSError:
        pass
    p.wait(timeout=10)
    p.out.seek(0)
    return p.out.read().decode(errors="replace")


def stdnames():
    out = subprocess.run([OPENSSL, "ciphers", "-stdname", "ALL:COMPLEMENTOFALL"],
                         capture_output=True, check=True).stdout.decode()
    m = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "-":
            m[parts[2]] = parts[0]
    return m


STD = None


def parse_client(out):
    """What s_client reported: negotiated values, certificates shown, alerts."""
    r = {}
    m = re.search(r"^(New|Reused), (\S+), Cipher is (\S+)", out, re.M)
    if m and m.group(3) != "(NONE)":
        r["established"] = True
        r["resumed"] = m.group(1) == "Reused"
        r["version"] = VERSIONS[m.group(2)]
        r["cipher"] = STD[m.group(3)]
    else:
        r["established"] = False
        r["resumed"] = False
    m = re.search(r"^Server Temp Key: (?:ECDH, )?([^,]+),", out, re.M)
    r["curve"] = CURVES[m.group(1)] if m else None
    m = re.search(r"^ALPN protocol: (\S+)", out, re.M)
    r["next_protocol"] = m.group(1) if m else None
    alerts = re.findall(r"^(<<<|>>>) [^,]+, Alert \[length [0-9a-f]+\], (fatal|warning) (\S+)", out, re.M)
    r["alerts"] = [(("server" if d == "<<<" else "client"), lvl, a) for d, lvl, a in alerts]
    r["server_hello"] = re.search(r"^<<< [^,]+, Handshake \[length [0-9a-f]+\], ServerHello",
                                  out, re.M) is not None
    sect = out.split("Certificate chain", 1)
    shown = []
    if len(sect) == 2:
        body = sect[1].split("\n---\n", 1)[0]
        for b in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", body, re.S):
            shown.append(fp(x509.load_pem_x509_certificate(b.encode())))
    r["shown_chain"] = shown
    return r


def record(name, server, client_args, truth_extra, pre=None, control=None):
    """One fixture: proxy in front of `server`, s_client through it."""
    if pre:
        pre(server)
    proxy = Proxy(server.port)
    p = s_client(proxy.port, client_args)
    mark = proxy.mark()
    cout = finish_client(p)
    proxy.t.join(5)
    if mark == 0 or not cout:
        raise RuntimeError(f"{name}: nothing recorded")
    failed = "Cipher is (NONE)" in cout
    if failed:
        # the handshake failed: keep everything up to the close
        mark = proxy.mark()
    flights = proxy.flights(mark)
    sout = server.close()
    return flights, parse_client(cout), cout, sout


# ------------------------------------------------------------------ main

def main():
    global STD
    STD = stdnames()
    os.makedirs(OUT, exist_ok=True)
    certdir = os.path.join(OUT, "certs")
    if os.path.isdir(certdir):
        shutil.rmtree(certdir)
    os.makedirs(certdir)
    for f in os.listdir(OUT):
        if f.endswith(".bin"):
            os.remove(os.path.join(OUT, f))
    tmp = tempfile.mkdtemp(prefix="mailtap-tls-")
    try:
        run(tmp, certdir)
    finally:
        shutil.rmtree(tmp)


def run(tmp, certdir):
    rsa_p, rsa_certs = chain(tmp, "rsa", rsa_key, "mailtap test RSA", RSA_NAME,
                             [RSA_NAME, "smtp.rsa.mailtap.example"])
    ec_p, ec_certs = chain(tmp, "ecdsa", ec_key, "mailtap test ECDSA", ECDSA_NAME,
                           [ECDSA_NAME, "smtp.ecdsa.mailtap.example"])
    cl_p, cl_certs = chain(tmp, "client", rsa_key, "mailtap test clients",
                           "relay.client.mailtap.example", ["relay.client.mailtap.example"],
                           client=True)
    rk = rsa_key()
    rogue_name = name("rogue.mailtap.example", "mailtap test rogue")
    rogue = make_cert(rogue_name, rk, rogue_name, rk, False, ["rogue.mailtap.example"])
    rogue_p = {"leaf": os.path.join(tmp, "rogue.pem"), "key": os.path.join(tmp, "rogue.key")}
    write(rogue_p["leaf"], pem(rogue))
    write(rogue_p["key"], key_pem(rk))

    certs = {}
    for label, cs in (("rsa", rsa_certs), ("ecdsa", ec_certs), ("client", cl_certs),
                      ("rogue", [rogue])):
        for role, c in zip(("leaf", "intermediate"), cs):
            fname = f"{label}-{role}.pem"
            write(os.path.join(certdir, fname), pem(c))
            certs[fp(c)] = {"file": f"certs/{fname}", "subject": openssl_subject(c, "subject"),
                            "issuer": openssl_subject(c, "issuer")}
    rsa_fps = [fp(c) for c in rsa_certs]
    ec_fps = [fp(c) for c in ec_certs]
    cl_fps = [fp(c) for c in cl_certs]

    srv_rsa = ["-cert", rsa_p["leaf"], "-key", rsa_p["key"], "-cert_chain", rsa_p["inter"]]
    srv_ec = ["-cert", ec_p["leaf"], "-key", ec_p["key"], "-cert_chain", ec_p["inter"]]
    ca_rsa = ["-CAfile", rsa_p["root"], "-verify_return_error"]
    ca_ec = ["-CAfile", ec_p["root"], "-verify_return_error"]

    def pyctx(p, maxv, minv=None, ciphers=None, curve=None, alpn=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(p["fullchain"], p["key"])
        ctx.maximum_version = maxv
        if minv:
            ctx.minimum_version = minv
        if ciphers:
            ctx.set_ciphers(ciphers)
        if curve:
            ctx.set_ecdh_curve(curve)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def resume(args):
        def pre(server):
            sess = os.path.join(tmp, "sess.pem")
            p = s_client(server.port, args + ["-sess_out", sess])
            out = finish_client(p)
            if "New, TLSv" not in out:
                raise RuntimeError("first handshake of a resumption failed")
            args.extend(["-sess_in", sess])
        return pre

    T13, T12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
    # name, server factory, client args, server chain fps (as sent), client chain fps, notes
    specs = [
        ("t13_rsa_sni", lambda: SServer(srv_rsa + ["-tls1_3"]),
         ["-servername", RSA_NAME] + ca_rsa, rsa_fps, [], "openssl s_server, RSA chain"),
        ("t13_ecdsa_sni", lambda: PyServer(pyctx(ec_p, T13, T13)),
         ["-servername", ECDSA_NAME] + ca_ec, ec_fps, [], "Python ssl server, ECDSA chain"),
        ("t13_rsa_nosni_p256", lambda: SServer(srv_rsa + ["-tls1_3", "-groups", "P-256"]),
         ["-noservername", "-groups", "P-256"] + ca_rsa, rsa_fps, [],
         "openssl s_server, RSA chain, no SNI, P-256 only"),
        ("t13_ecdsa_alpn", lambda: PyServer(pyctx(ec_p, T13, T13, curve="secp384r1", alpn=["smtp"])),
         ["-servername", ECDSA_NAME, "-alpn", "smtp", "-groups", "P-384"] + ca_ec, ec_fps, [],
         "Python ssl server with ALPN smtp (sent in the encrypted EncryptedExtensions), ECDSA chain, P-384 only"),
        ("t13_chacha", lambda: SServer(srv_ec + ["-tls1_3", "-ciphersuites",
                                                 "TLS_CHACHA20_POLY1305_SHA256"]),
         ["-servername", ECDSA_NAME, "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"] + ca_ec,
         ec_fps, [], "openssl s_server, ChaCha20 only"),
        ("t13_resumed", lambda: SServer(srv_rsa + ["-tls1_3"], n=2),
         ["-servername", RSA_NAME] + ca_rsa, rsa_fps, [],
         "openssl s_server; a first full handshake (not recorded) gives the ticket, this one resumes with it (PSK, psk_dhe_ke)"),
        ("t12_rsa_sni", lambda: PyServer(pyctx(rsa_p, T12, ciphers="ECDHE-RSA-AES256-GCM-SHA384")),
         ["-servername", RSA_NAME] + ca_rsa, rsa_fps, [], "Python ssl server, RSA chain"),
        ("t12_ecdsa_alpn", lambda: SServer(srv_ec + ["-tls1_2", "-cipher",
                                                    "ECDHE-ECDSA-AES128-GCM-SHA256",
                                                    "-groups", "P-256", "-alpn", "smtp"]),
         ["-servername", ECDSA_NAME, "-alpn", "smtp"] + ca_ec, ec_fps, [],
         "openssl s_server, ECDSA chain, P-256 only, ALPN smtp (in the clear in the ServerHello)"),
        ("t12_rsa_nosni_chacha", lambda: SServer(srv_rsa + ["-tls1_2", "-cipher",
                                                           "ECDHE-RSA-CHACHA20-POLY1305"]),
         ["-noservername"] + ca_rsa, rsa_fps, [], "openssl s_server, RSA chain, no SNI"),
        ("t12_resumed", lambda: SServer(srv_rsa + ["-tls1_2", "-cipher",
                                                  "ECDHE-RSA-AES256-GCM-SHA384"], n=2),
         ["-servername", RSA_NAME] + ca_rsa, [], [],
         "openssl s_server; a first full handshake (not recorded) gives the session ticket, this one resumes (abbreviated handshake, no certificate)"),
        ("t12_client_cert", lambda: SServer(srv_rsa + ["-tls1_2", "-cipher",
                                                      "ECDHE-RSA-AES128-GCM-SHA256",
                                                      "-Verify", "2", "-CAfile", cl_p["root"]]),
         ["-servername", RSA_NAME, "-cert", cl_p["leaf"], "-key", cl_p["key"],
          "-cert_chain", cl_p["inter"]] + ca_rsa, rsa_fps, cl_fps,
         "openssl s_server requiring a client certificate; the client sends an RSA chain"),
        ("alert_unknown_ca", lambda: SServer(["-cert", rogue_p["leaf"], "-key", rogue_p["key"],
                                              "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384",
                                              "-groups", "X25519"], n=2),
         ["-servername", RSA_NAME] + ca_rsa, [fp(rogue)], [],
         "openssl s_server with a self-signed certificate; the verifying client aborts with a fatal unknown_ca alert"),
        ("alert_protocol_version", lambda: SServer(srv_rsa + ["-tls1_3"]),
         ["-servername", RSA_NAME, "-tls1_2"] + ca_rsa, [], [],
         "server allows only TLS 1.3, client only TLS 1.2: the server answers the ClientHello with a fatal protocol_version alert"),
    ]

    fixtures = []
    for name_, mk, cargs, srv_fps, cli_fps, notes in specs:
        cargs = list(cargs)
        server = mk()
        pre = resume(cargs) if name_.endswith("_resumed") else None
        control = None
        if name_ == "alert_unknown_ca":
            # control handshake against the same server, not verifying
            p = s_client(server.port, ["-servername", RSA_NAME])
            control = parse_client(finish_client(p))
        flights, rep, cout, sout = record(name_, server, cargs, None, pre=pre)
        py = server.info if isinstance(server, PyServer) else None
        fatal = [a for a in rep["alerts"] if a[1] == "fatal"]
        if rep["established"] and (fatal or any(a[2] != "close_notify" for a in rep["alerts"])):
            raise RuntimeError(f"{name_}: unexpected alerts {rep['alerts']}")
        if not rep["established"] and not fatal:
            raise RuntimeError(f"{name_}: failed without a fatal alert")
        t = {
            "name": name_,
            "notes": notes,
            "version": rep.get("version"),
            "cipher": rep.get("cipher"),
            "curve": rep["curve"],
            "server_name": None if "-noservername" in cargs else cargs[cargs.index("-servername") + 1],
            "resumed": rep["resumed"],
            "established": rep["established"],
            # alerts inside the recorded handshake: a fatal one ends a failed
            # handshake; an established one records none (its close_notify,
            # after the cut, is the generator's and encrypted)
            "last_alert": fatal[-1][2] if fatal else None,
            "alert_from": fatal[-1][0] if fatal else None,
            "next_protocol": rep["next_protocol"],
            "server_certs": srv_fps,
            "client_certs": cli_fps,
        }
        if name_.endswith("_resumed") and not rep["resumed"]:
            raise RuntimeError(f"{name_}: s_client did not resume")
        if control:
            # (s_client's -msg labels the ServerHello with the version it
            # offered, so only its presence is checked there)
            if not rep["server_hello"] or not control["established"]:
                raise RuntimeError("alert_unknown_ca: no ServerHello, or the control failed")
            t["version"], t["cipher"], t["curve"] = control["version"], control["cipher"], control["curve"]
            t["truth_source"] = "version/cipher/curve: control handshake against the same server (s_client without verification); alert: s_client -msg"
        else:
            t["truth_source"] = "openssl s_client output" + (" and the Python ssl server" if py else "")
        if py is not None and rep["established"]:
            if "error" in py:
                raise RuntimeError(f"{name_}: Python server: {py['error']}")
            if VERSIONS[py["version"]] != t["version"] or STD[py["cipher"]] != t["cipher"] \
                    or py["alpn"] != t["next_protocol"]:
                raise RuntimeError(f"{name_}: Python server {py} disagrees with s_client {t}")
        # what the server showed s_client must be the chain we configured
        if srv_fps and rep["shown_chain"] and rep["shown_chain"] != srv_fps:
            raise RuntimeError(f"{name_}: shown chain {rep['shown_chain']} != {srv_fps}")
        # Zeek's cert_chain_fps: certificates sent in the clear
        t["cert_chain_fps"] = srv_fps if t["version"] == "TLSv12" else []
        t["client_cert_chain_fps"] = cli_fps if t["version"] == "TLSv12" else []
        t["flights"] = [[d, len(b)] for d, b in flights]
        with open(os.path.join(OUT, f"{name_}.bin"), "wb") as f:
            for d, b in flights:
                f.write(d.encode() + len(b).to_bytes(4, "big") + b)
        fixtures.append(t)
        print(f"{name_}: {t['version']} {t['cipher']} {t['curve']} sni={t['server_name']} "
              f"resumed={t['resumed']} established={t['established']} alert={t['last_alert']} "
              f"alpn={t['next_protocol']} flights={t['flights']}", file=sys.stderr)

    with open(os.path.join(OUT, "truth.json"), "w") as f:
        json.dump({"openssl": subprocess.run([OPENSSL, "version"], capture_output=True,
                                             text=True).stdout.strip(),
                   "python_ssl": ssl.OPENSSL_VERSION,
                   "certificates": certs, "fixtures": fixtures}, f, indent=2)
        f.write("\n")
    write_rust(fixtures, certs)


def rs_opt(v):
    return "None" if v is None else f"Some({json.dumps(v)})"


def write_rust(fixtures, certs):
    lines = [
        "// Generated by scripts/record-tls-handshakes.py; do not edit (run the script).",
        "// The truth of every recorded handshake (see tls/truth.json for notes).",
        "",
        "pub(crate) static FIXTURES: &[Fixture] = &[",
    ]
    for t in fixtures:
        def fps(v):
            return "&[" + ", ".join(json.dumps(x) for x in v) + "]"
        def cert_list(v):
            return "&[" + ", ".join(
                f"CertTruth {{ fingerprint: {json.dumps(x)}, subject: {json.dumps(certs[x]['subject'])}, issuer: {json.dumps(certs[x]['issuer'])} }}"
                for x in v) + "]"
        lines += [
            "    Fixture {",
            f"        bytes: include_bytes!(\"{t['name']}.bin\"),",
            "        truth: HandshakeTruth {",
            f"            name: {json.dumps(t['name'])},",
            f"            version: {rs_opt(t['version'])},",
            f"            cipher: {rs_opt(t['cipher'])},",
            f"            curve: {rs_opt(t['curve'])},",
            f"            server_name: {rs_opt(t['server_name'])},",
            f"            resumed: {str(t['resumed']).lower()},",
            f"            established: {str(t['established']).lower()},",
            f"            last_alert: {rs_opt(t['last_alert'])},",
            f"            next_protocol: {rs_opt(t['next_protocol'])},",
            f"            cert_chain_fps: {fps(t['cert_chain_fps'])},",
            f"            client_cert_chain_fps: {fps(t['client_cert_chain_fps'])},",
            f"            certs: {cert_list(t['cert_chain_fps'] + t['client_cert_chain_fps'])},",
            "        },",
            "    },",
        ]
    lines.append("];")
    with open(os.path.join(OUT, "fixtures.rs"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
