"""Differential scenarios of the loop's TLS layer (the libloop half: diff_tls.cpp).

Certificates are made at run time with the openssl CLI, as tests/support/test_certs.hpp does
for the C++ half (same subjects and extensions). Most scenarios keep one log per side and
print the two one after the other: the order within a side is what is pinned, not the
interleaving of two sides, which would depend on when the kernel hands over the bytes.
Written so that it also runs on Python 3.7 (python3.7 diff_tls.py NAME), to compare.
"""
import asyncio
import atexit
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402

HOST = "127.0.0.1"

# ---- Certificates (test_certs.hpp's, made the same way) ----------------------------------


class _Certs:
    def __init__(self):
        d = self.dir = tempfile.mkdtemp(prefix="diff-tls-certs-")
        atexit.register(shutil.rmtree, d, True)
        req = "[req]\ndistinguished_name=dn\n[dn]\n"
        ca_ext = (req + "[v3]\nbasicConstraints=critical,CA:TRUE\n"
                  "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n")

        def leaf_ext(san):
            return (req + "[v3]\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=" + san + "\n")

        self._make("ca", "/O=libloop tests/CN=libloop test CA", None, ca_ext)
        self._make("server", "/O=libloop tests/CN=localhost", "ca",
                   leaf_ext("DNS:localhost,IP:127.0.0.1,IP:::1"))
        self._make("unknown_ca", "/O=nobody/CN=unknown test CA", None, ca_ext)
        self._make("other", "/O=nobody/CN=other.example", "unknown_ca",
                   leaf_ext("DNS:other.example"))
        self._make("client", "/O=libloop tests/CN=test client", "ca", leaf_ext("DNS:client"))

    def _run(self, *args):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _make(self, name, subject, ca, ext):
        d = self.dir
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext)
        key, pem = f"{d}/{name}.key", f"{d}/{name}.pem"
        self._run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        if ca is None:
            self._run("openssl", "req", "-x509", "-new", "-key", key, "-subj", subject, "-days",
                      "30", "-sha256", "-extensions", "v3", "-config", f"{d}/{name}.ext",
                      "-out", pem)
        else:
            self._run("openssl", "req", "-new", "-key", key, "-subj", subject, "-out",
                      f"{d}/{name}.csr")
            self._run("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca}.pem",
                      "-CAkey", f"{d}/{ca}.key", "-CAcreateserial", "-days", "30", "-sha256",
                      "-extfile", f"{d}/{name}.ext", "-extensions", "v3", "-out", pem)

    def pem(self, name):
        return f"{self.dir}/{name}.pem"

    def key(self, name):
        return f"{self.dir}/{name}.key"


_certs = None


def certs():
    global _certs
    if _certs is None:
        _certs = _Certs()
    return _certs


def server_ctx(name="server"):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs().pem(name), certs().key(name))
    return ctx


def client_ctx(ca="ca"):
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs().pem(ca))


# ---- Helpers --------------------------------------------------------------------------------


def ename(exc):
    return "None" if exc is None else type(exc).__name__


def os_error(exc):
    # What both libraries report when the peer fails a handshake: asyncio sees a bare EOF
    # (ConnectionResetError), libloop the TLS alert the peer sent (SSLError). Both are
    # OSErrors; the README lists the alert as a departure.
    return "OSError" if isinstance(exc, OSError) else ename(exc)


class Log:
    def __init__(self, name):
        self.name = name
        self.lines = []

    def __call__(self, *args):
        self.lines.append(" ".join(str(a) for a in args))

    def show(self):
        for line in self.lines:
            say(self.name + ":", line)


class Rec(asyncio.Protocol):
    """Logs every callback (consecutive data_received once); hooks for reactions.

    The side that closed its transport does not log eof_received (unless strict): whether the
    peer's close_notify answer reaches it is pinned by the clean_close_* scenarios only.
    """

    def __init__(self, loop, log, eof_result=False, strict=False):
        self.log = log
        self.t = None
        self.received = ""
        self.eof_result = eof_result
        self.strict = strict
        self.closed_by_me = False
        self.lost = loop.create_future()
        self.on_made = self.on_data = self.on_eof = None

    def close(self):
        self.closed_by_me = True
        self.t.close()

    def connection_made(self, t):
        self.t = t
        self.log("connection_made")
        if self.on_made:
            self.on_made(self, t)

    def data_received(self, d):
        self.received += d.decode("latin-1")
        if not self.log.lines or self.log.lines[-1] != "data_received":
            self.log("data_received")
        if self.on_data:
            self.on_data(self, d)

    def eof_received(self):
        if self.strict or not self.closed_by_me:
            self.log("eof_received")
        if self.on_eof:
            self.on_eof(self)
        return self.eof_result

    def connection_lost(self, exc):
        self.log("connection_lost", ename(exc))
        if not self.lost.done():
            self.lost.set_result(None)


def run(coro_fn):
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    try:
        lp.run_until_complete(coro_fn(lp))
    finally:
        asyncio.set_event_loop(None)
        lp.close()


async def tls_server(lp, factory, ctx=None, **kw):
    srv = await lp.create_server(factory, HOST, 0, ssl=ctx or server_ctx(), **kw)
    return srv, srv.sockets[0].getsockname()[1]


async def stop(srv):
    srv.close()
    await srv.wait_closed()


def cn(cert, field="subject"):
    for rdn in cert[field]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return "?"


async def wait_until(cond, timeout=3.0):
    for _ in range(int(timeout / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise RuntimeError("wait_until timed out")


async def connect_pair(lp, slog, clog, server_kw=None, client_kw=None, sproto=None):
    """A TLS server with one Rec per connection and a Rec client connected to it."""
    sp = []

    def factory():
        p = sproto(lp, slog) if sproto else Rec(lp, slog)
        sp.append(p)
        return p

    srv, port = await tls_server(lp, factory, **(server_kw or {}))
    kw = dict(ssl=client_ctx(), server_hostname="localhost")
    kw.update(client_kw or {})
    t, cp = await lp.create_connection(lambda: Rec(lp, clog), HOST, port, **kw)
    return srv, port, sp, t, cp


# ---- Handshake and the order of callbacks ----------------------------------------------------


@scenario
def factory_then_client_connection_made_then_server_connection_made():
    # The server's protocol exists from the accept on; its connection_made waits for the
    # client's Finished, which the client sends after its own connection_made.
    log = Log("log")

    async def body(lp):
        def factory():
            log("server factory")
            p = Rec(lp, Log("s"))
            p.on_made = lambda p, t: log("server connection_made")
            return p

        srv, port = await tls_server(lp, factory)
        cp = Rec(lp, Log("c"))
        cp.on_made = lambda p, t: log("client connection_made")
        t, _ = await lp.create_connection(lambda: cp, HOST, port, ssl=client_ctx(),
                                          server_hostname="localhost")
        log("create_connection returned")
        await wait_until(lambda: "server connection_made" in log.lines)
        t.close()
        await cp.lost
        await stop(srv)

    run(body)
    log.show()


@scenario
def create_connection_returns_the_connected_pair():
    clog = Log("client")

    async def body(lp):
        made = []

        def factory():
            p = Rec(lp, clog)
            p.on_made = lambda p, t: made.append(t)
            return p

        srv, port = await tls_server(lp, lambda: Rec(lp, Log("s")))
        t, p = await lp.create_connection(factory, HOST, port, ssl=client_ctx(),
                                          server_hostname="localhost")
        clog("returned; same transport as connection_made's:", t is made[0])
        clog("get_protocol is the protocol:", t.get_protocol() is p)
        clog("is_closing:", t.is_closing())
        p.close()
        clog("is_closing after close:", t.is_closing())
        await p.lost
        await stop(srv)

    run(body)
    clog.show()


@scenario
def extra_info_is_ready_in_connection_made():
    slog, clog = Log("server"), Log("client")

    def report(log, ctx_holder):
        def on_made(p, t):
            cert = t.get_extra_info("peercert")
            log("peercert:", "None" if cert is None else cn(cert))
            cipher = t.get_extra_info("cipher")
            log("cipher:", cipher is not None, cipher[1] if cipher else "-")
            log("ssl_object present:", t.get_extra_info("ssl_object") is not None)
            log("compression:", t.get_extra_info("compression"))
            log("sslcontext is ours:", t.get_extra_info("sslcontext") is ctx_holder[0])
        return on_made

    async def body(lp):
        sctx, cctx = [server_ctx()], [client_ctx()]

        def sfactory():
            p = Rec(lp, slog)
            p.on_made = report(slog, sctx)
            return p

        def cfactory():
            p = Rec(lp, clog)
            p.on_made = report(clog, cctx)
            return p

        srv, port = await tls_server(lp, sfactory, sctx[0])
        t, p = await lp.create_connection(cfactory, HOST, port, ssl=cctx[0],
                                          server_hostname="localhost")
        await wait_until(lambda: len(slog.lines) > 1)
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    clog.show()
    slog.show()


@scenario
def writes_in_connection_made_on_both_sides():
    slog, clog = Log("server"), Log("client")

    class S(Rec):
        def connection_made(self, t):
            super().connection_made(t)
            t.write(b"hello from server")

        def data_received(self, d):
            super().data_received(d)
            if self.received == "hello from client":
                self.log("got", self.received)
                self.close()

    async def body(lp):
        def cfactory():
            p = Rec(lp, clog)
            p.on_made = lambda p, t: t.write(b"hello from client")
            return p

        sp = []
        srv, port = await tls_server(lp, lambda: sp.append(S(lp, slog)) or sp[-1])
        t, p = await lp.create_connection(cfactory, HOST, port, ssl=client_ctx(),
                                          server_hostname="localhost")
        await p.lost
        await sp[0].lost
        clog("received", p.received)
        await stop(srv)

    run(body)
    clog.show()
    slog.show()


@scenario
def echo_roundtrips_keep_their_order():
    clog = Log("client")

    class Echo(Rec):
        def data_received(self, d):
            super().data_received(d)
            self.t.write(b"[" + d + b"]")

    async def body(lp):
        srv, port, sp, t, p = await connect_pair(lp, Log("s"), clog, sproto=Echo)
        for i in range(5):
            t.write(f"m{i}".encode())
            await wait_until(lambda: p.received.endswith(f"m{i}]"))
        clog("received", p.received)
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    clog.show()


# ---- Closing ---------------------------------------------------------------------------------


def _clean_close(closer_is_client):
    slog, clog = Log("server"), Log("client")

    async def body(lp):
        def sfactory():
            p = Rec(lp, slog, strict=True)
            sp.append(p)
            return p

        sp = []
        srv, port = await tls_server(lp, sfactory)
        t, p = await lp.create_connection(lambda: Rec(lp, clog, strict=True), HOST, port,
                                          ssl=client_ctx(), server_hostname="localhost")
        t.write(b"x")
        await wait_until(lambda: sp and sp[0].received == "x")
        closer = p if closer_is_client else sp[0]
        closer.log("close()")
        closer.close()
        await p.lost
        await sp[0].lost
        await stop(srv)

    run(body)
    clog.show()
    slog.show()


@scenario
def clean_close_by_client():
    # close_notify both ways. asyncio 3.11 calls eof_received on both sides (the closer's when
    # the peer's close_notify answers its own, before it closes); 3.7 on the closer only, for
    # the TCP EOF behind the answer.
    _clean_close(True)


@scenario
def clean_close_by_server():
    _clean_close(False)


@scenario
def close_flushes_writes_before_close_notify():
    clog = Log("client")

    class S(Rec):
        def connection_made(self, t):
            super().connection_made(t)
            t.write(b"one,")
            t.write(b"two,")
            t.writelines([b"three"])
            self.close()
            self.log("is_closing", t.is_closing())
            t.write(b"dropped")  # after close(): silently dropped
            self.log("write after close raised nothing")

    async def body(lp):
        slog = Log("server")
        srv, port, sp, t, p = await connect_pair(lp, slog, clog, sproto=S)
        await p.lost
        await sp[0].lost
        clog("received", p.received)
        slog.show()
        await stop(srv)

    run(body)
    clog.show()


@scenario
def abort_reaches_the_peer_as_eof_without_close_notify():
    slog, clog = Log("server"), Log("client")

    class Echo(Rec):
        def data_received(self, d):
            super().data_received(d)
            self.t.write(d)

    async def body(lp):
        srv, port, sp, t, p = await connect_pair(lp, slog, clog, sproto=Echo)
        t.write(b"ping")
        await wait_until(lambda: p.received == "ping")
        clog("abort()")
        t.abort()
        clog("is_closing", t.is_closing())
        await p.lost
        await sp[0].lost
        await stop(srv)

    run(body)
    clog.show()
    slog.show()


@scenario
def eof_received_true_without_close_notify_still_closes():
    # The peer shuts its socket's write side: TCP EOF, no close_notify. Returning True from
    # eof_received cannot keep a TLS connection half-open (asyncio logs a warning).
    slog, clog = Log("server"), Log("client")

    async def body(lp):
        def sfactory():
            p = Rec(lp, slog, eof_result=True)
            sp.append(p)
            return p

        sp = []
        srv, port = await tls_server(lp, sfactory)
        t, p = await lp.create_connection(lambda: Rec(lp, clog), HOST, port, ssl=client_ctx(),
                                          server_hostname="localhost")
        t.write(b"before eof")
        await wait_until(lambda: sp and sp[0].received == "before eof")
        t.get_extra_info("socket").shutdown(socket.SHUT_WR)
        await sp[0].lost
        await p.lost
        await stop(srv)

    run(body)
    clog.show()
    slog.show()


@scenario
def write_after_connection_lost_is_dropped():
    clog = Log("client")

    async def body(lp):
        srv, port, sp, t, p = await connect_pair(lp, Log("s"), clog)
        await wait_until(lambda: bool(sp) and sp[0].t is not None)
        sp[0].close()
        await p.lost
        t.write(b"late")
        clog("write after connection_lost raised nothing")
        await sp[0].lost
        await stop(srv)

    run(body)
    clog.show()


# ---- Extra info --------------------------------------------------------------------------------


@scenario
def peercert_fields_seen_by_the_client():
    clog = Log("client")

    async def body(lp):
        srv, port, sp, t, p = await connect_pair(lp, Log("s"), clog)
        cert = t.get_extra_info("peercert")
        clog("subject CN", cn(cert), "issuer CN", cn(cert, "issuer"))
        clog("subject", [[list(pair) for pair in rdn] for rdn in cert["subject"]])
        clog("subjectAltName", [list(x) for x in cert["subjectAltName"]])
        clog("version", cert["version"])
        clog("has", sorted(k for k in ("notAfter", "notBefore", "serialNumber") if k in cert))
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    clog.show()


@scenario
def mutual_tls_client_certificate_reaches_the_server():
    slog = Log("server")

    async def body(lp):
        sctx = server_ctx()
        sctx.verify_mode = ssl.CERT_REQUIRED
        sctx.load_verify_locations(certs().pem("ca"))
        cctx = client_ctx()
        cctx.load_cert_chain(certs().pem("client"), certs().key("client"))

        def sfactory():
            p = Rec(lp, slog)
            p.on_made = lambda p, t: slog("peercert subject CN", cn(t.get_extra_info("peercert")),
                                          "issuer CN", cn(t.get_extra_info("peercert"), "issuer"))
            return p

        srv, port = await tls_server(lp, sfactory, sctx)
        t, p = await lp.create_connection(lambda: Rec(lp, Log("c")), HOST, port, ssl=cctx,
                                          server_hostname="localhost")
        await wait_until(lambda: len(slog.lines) >= 2)
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    slog.show()


@scenario
def server_without_client_certificate_has_peercert_none():
    slog = Log("server")

    async def body(lp):
        def sfactory():
            p = Rec(lp, slog)
            p.on_made = lambda p, t: slog("peercert", t.get_extra_info("peercert"))
            return p

        srv, port = await tls_server(lp, sfactory)
        t, p = await lp.create_connection(lambda: Rec(lp, Log("c")), HOST, port, ssl=client_ctx(),
                                          server_hostname="localhost")
        await wait_until(lambda: len(slog.lines) >= 2)
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    slog.show()


@scenario
def extra_info_after_connection_lost():
    clog = Log("client")

    async def body(lp):
        srv, port, sp, t, p = await connect_pair(lp, Log("s"), clog)
        clog("before: peername port matches", t.get_extra_info("peername")[1] == port)
        p.close()
        await p.lost
        clog("after: peercert CN", cn(t.get_extra_info("peercert")))
        clog("after: cipher present", t.get_extra_info("cipher") is not None)
        clog("after: ssl_object present", t.get_extra_info("ssl_object") is not None)
        clog("after: sslcontext present", t.get_extra_info("sslcontext") is not None)
        clog("after: peername", t.get_extra_info("peername", "DEFAULT"))
        clog("after: socket", t.get_extra_info("socket", "DEFAULT"))
        await stop(srv)

    run(body)
    clog.show()


# ---- Handshake failures --------------------------------------------------------------------


def _failed_connect(ctx_fn, server_hostname, server_name="server", debug=False,
                    next_ca="ca", next_hostname="localhost"):
    log = Log("log")

    async def body(lp):
        handler_calls = []
        lp.set_exception_handler(lambda l, c: handler_calls.append(c))
        lp.set_debug(debug)
        made = []

        def factory():
            log("server factory")
            p = Rec(lp, Log("s"))
            p.on_made = lambda p, t: made.append(t)
            return p

        srv, port = await tls_server(lp, factory, server_ctx(server_name))
        cp = []
        try:
            await lp.create_connection(lambda: cp.append(Rec(lp, Log("c"))) or cp[-1], HOST, port,
                                       ssl=ctx_fn(), server_hostname=server_hostname)
            log("connected?!")
        except Exception as e:
            log("client:", ename(e), "is SSLError", isinstance(e, ssl.SSLError))
            log("verify_code", getattr(e, "verify_code", None))
            log("verify_message", getattr(e, "verify_message", None))
            log("client protocol events", cp[0].log.lines if cp else "no protocol")
        await asyncio.sleep(0.1)  # the server's side of the failure
        log("server connection_made calls", len(made))
        if debug:
            for c in handler_calls:
                log("handler:", c.get("message"), os_error(c.get("exception")))
        else:
            log("handler calls", len(handler_calls))
        # The server goes on serving.
        t, p = await lp.create_connection(lambda: Rec(lp, Log("c2")), HOST, port,
                                          ssl=client_ctx(next_ca), server_hostname=next_hostname)
        log("next client connected")
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    log.show()


@scenario
def untrusted_certificate_fails_the_client_handshake():
    _failed_connect(lambda: client_ctx("unknown_ca"), "localhost")


@scenario
def hostname_mismatch_fails_the_client_handshake():
    _failed_connect(client_ctx, "wrong.example")


@scenario
def ip_address_mismatch_fails_the_client_handshake():
    # server_hostname defaults to the host, an IP address the certificate does not name.
    _failed_connect(lambda: client_ctx("unknown_ca"), None, server_name="other",
                    next_ca="unknown_ca", next_hostname="other.example")


@scenario
def untrusted_certificate_what_the_server_sees_in_debug_mode():
    # The handler's exception: the client's alert on libloop (SSLError), a reset on asyncio.
    _failed_connect(lambda: client_ctx("unknown_ca"), "localhost", debug=True)


@scenario
def empty_server_hostname_with_a_hostname_checking_context():
    # asyncio's docs: server_hostname="" disables hostname matching. Its SSLProtocol turns ""
    # into None, which a context with check_hostname refuses.
    log = Log("log")

    async def body(lp):
        srv, port = await tls_server(lp, lambda: Rec(lp, Log("s")), server_ctx("other"))
        try:
            t, p = await lp.create_connection(lambda: Rec(lp, Log("c")), HOST, port,
                                              ssl=client_ctx("unknown_ca"), server_hostname="")
            log("connected, peer", cn(t.get_extra_info("peercert")))
            p.close()
            await p.lost
        except Exception as e:
            log("refused:", ename(e), e)
        await stop(srv)

    run(body)
    log.show()


class EndRec(Rec):
    """A Rec that logs that its connection ended, cleanly or by an OSError, not how."""

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.log("connection_lost; None or an OSError:", exc is None or isinstance(exc, OSError))
        if not self.lost.done():
            self.lost.set_result(None)


@scenario
def client_certificate_required_but_not_sent():
    # TLS 1.3: the client's handshake is over before the server checks for its certificate.
    # The server's alert (certificate required) ends the client's connection with an SSLError
    # on libloop; asyncio drops it, the client sees an EOF: eof_received, connection_lost None.
    clog = Log("client")
    log = Log("server")

    async def body(lp):
        sctx = server_ctx()
        sctx.verify_mode = ssl.CERT_REQUIRED
        sctx.load_verify_locations(certs().pem("ca"))
        made = []

        def sfactory():
            log("factory")
            p = Rec(lp, Log("s"))
            p.on_made = lambda p, t: made.append(1)
            return p

        srv, port = await tls_server(lp, sfactory, sctx)
        t, p = await lp.create_connection(lambda: EndRec(lp, clog), HOST, port,
                                          ssl=client_ctx(), server_hostname="localhost")
        await p.lost
        log("connection_made calls", len(made))
        await stop(srv)

    run(body)
    clog.show()
    log.show()


@scenario
def plaintext_client_to_tls_server():
    clog = Log("client")

    async def body(lp):
        made = []

        def sfactory():
            p = Rec(lp, Log("s"))
            p.on_made = lambda p, t: made.append(1)
            return p

        srv, port = await tls_server(lp, sfactory)
        t, p = await lp.create_connection(lambda: Rec(lp, clog), HOST, port)
        t.write(b"GET / HTTP/1.0\r\n\r\n")
        await p.lost
        clog("received", repr(p.received))
        clog("server connection_made calls", len(made))
        await stop(srv)

    run(body)
    clog.show()


@scenario
def handshake_timeout_on_the_client():
    slog, log = Log("plain server"), Log("client")

    async def body(lp):
        sp = []
        srv = await lp.create_server(lambda: sp.append(Rec(lp, slog)) or sp[-1], HOST, 0)
        port = srv.sockets[0].getsockname()[1]
        t0 = lp.time()
        try:
            await lp.create_connection(lambda: Rec(lp, Log("c")), HOST, port, ssl=client_ctx(),
                                       server_hostname="localhost", ssl_handshake_timeout=0.2)
        except Exception as e:
            log(ename(e), str(e).startswith(
                "SSL handshake is taking longer than 0.2 seconds: aborting the connection"))
        log("took at least 0.2 s", lp.time() - t0 >= 0.19)
        await sp[0].lost
        await stop(srv)

    run(body)
    log.show()
    slog.show()


@scenario
def handshake_timeout_on_the_server():
    clog, log = Log("plain client"), Log("server")

    async def body(lp):
        made = []

        def sfactory():
            log("factory")
            p = Rec(lp, Log("s"))
            p.on_made = lambda p, t: made.append(1)
            return p

        srv, port = await tls_server(lp, sfactory, ssl_handshake_timeout=0.2)
        t0 = lp.time()
        t, p = await lp.create_connection(lambda: Rec(lp, clog), HOST, port)
        await p.lost
        clog("lost after at least 0.2 s", lp.time() - t0 >= 0.19)
        log("connection_made calls", len(made))
        await stop(srv)

    run(body)
    clog.show()
    log.show()


# ---- start_tls -----------------------------------------------------------------------------


class StartTLSServer(Rec):
    """Plain until "STARTTLS\\n", answers "OK\\n" and upgrades (server side)."""

    def __init__(self, loop, log, delay=0.0):
        super().__init__(loop, log)
        self.loop = loop
        self.delay = delay
        self.tls = None
        self.error = None
        self.upgraded = loop.create_future()

    def data_received(self, d):
        super().data_received(d)
        if self.tls is None and self.received == "STARTTLS\n":
            self.log("plain:", repr(self.received))
            self.received = ""
            if self.delay:
                self.t.pause_reading()  # what follows is TLS: keep it in the socket
            self.t.write(b"OK\n")
            self.loop.create_task(self.upgrade())
        elif self.tls is not None and self.received == "tls ping":
            self.log("tls:", self.received)
            self.tls.write(b"tls pong")

    async def upgrade(self):
        if self.delay:
            await asyncio.sleep(self.delay)
        old = self.t
        try:
            self.tls = await self.loop.start_tls(old, self, server_ctx(), server_side=True)
        except Exception as e:
            self.error = e
            self.upgraded.set_result(None)
            return
        self.log("upgraded; new transport:", self.tls is not old,
                 "get_protocol is us:", self.tls.get_protocol() is self,
                 "cipher:", self.tls.get_extra_info("cipher")[1])
        self.upgraded.set_result(None)


def _start_tls(delay=0.0, client_ca="ca"):
    slog, clog = Log("server"), Log("client")

    async def body(lp):
        sp = []
        srv = await lp.create_server(
            lambda: sp.append(StartTLSServer(lp, slog, delay)) or sp[-1], HOST, 0)
        port = srv.sockets[0].getsockname()[1]
        t, p = await lp.create_connection(lambda: Rec(lp, clog), HOST, port)
        t.write(b"STARTTLS\n")
        await wait_until(lambda: p.received == "OK\n")
        clog("plain:", repr(p.received))
        p.received = ""
        try:
            tls = await lp.start_tls(t, p, client_ctx(client_ca), server_hostname="localhost")
        except Exception as e:
            # Whether the protocol then hears connection_lost differs: 3.11 calls it with the
            # error, 3.7 does not (its SSLProtocol never established a session). Not printed.
            res = Log("result")
            res("client start_tls:", ename(e), "old transport closing:", t.is_closing())
            await sp[0].upgraded
            err = sp[0].error
            res("server start_tls:", "failed with" if err else "succeeded", os_error(err))
            await asyncio.sleep(0.05)
            res("server transport closing:", sp[0].t.is_closing())
            await stop(srv)
            res.show()
            return
        clog("upgraded; new transport:", tls is not t, "get_protocol is us:",
             tls.get_protocol() is p, "peer CN:", cn(tls.get_extra_info("peercert")))
        await sp[0].upgraded
        tls.write(b"tls ping")
        await wait_until(lambda: p.received == "tls pong")
        clog("tls:", p.received)
        p.t = tls
        p.close()
        await p.lost
        await sp[0].lost
        await stop(srv)

    run(body)
    if client_ca == "ca":
        clog.show()
        slog.show()


@scenario
def start_tls_on_both_sides_of_a_plain_connection():
    _start_tls()


@scenario
def start_tls_with_the_client_hello_already_waiting():
    # The server pauses reading and upgrades 0.2 s later: the ClientHello waits in its socket.
    _start_tls(delay=0.2)


@scenario
def start_tls_handshake_failure():
    # The server's start_tls fails on the client's alert (unknown ca): an SSLError on libloop,
    # a ConnectionResetError on asyncio, which drops the alert; both OSErrors.
    _start_tls(client_ca="unknown_ca")


# ---- Streams ---------------------------------------------------------------------------------


@scenario
def streams_over_tls():
    log = Log("log")

    async def body(lp):
        done = lp.create_future()

        async def handler(r, w):
            line = await r.readline()
            log("server read", repr(line.decode()))
            w.write(line.upper())
            await w.drain()
            rest = await r.read()
            log("server read to eof", repr(rest.decode()), "at_eof", r.at_eof())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handler, HOST, 0, ssl=server_ctx())
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection(HOST, port, ssl=client_ctx(),
                                             server_hostname="localhost")
        log("client peer CN", cn(w.get_extra_info("peercert")))
        w.write(b"hello tls\n")
        log("client readline", repr((await r.readline()).decode()))
        w.write(b"last words")
        w.close()
        await w.wait_closed()
        log("client closed")
        await done
        log("client read after close", repr((await r.read()).decode()), "at_eof", r.at_eof())
        await stop(srv)

    run(body)
    log.show()


@scenario
def streams_readexactly_short_over_tls():
    log = Log("log")

    async def body(lp):
        async def handler(r, w):
            w.write(b"abc")
            w.close()

        srv = await asyncio.start_server(handler, HOST, 0, ssl=server_ctx())
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection(HOST, port, ssl=client_ctx(),
                                             server_hostname="localhost")
        try:
            await r.readexactly(10)
        except asyncio.IncompleteReadError as e:
            log(ename(e), "partial", repr(e.partial.decode()), "expected", e.expected)
        log("at_eof", r.at_eof())
        w.close()
        await w.wait_closed()
        await stop(srv)

    run(body)
    log.show()


# ---- Reading flow, protocols -----------------------------------------------------------------


@scenario
def pause_reading_holds_decrypted_data_back():
    clog = Log("client")

    async def body(lp):
        srv, port, sp, t, p = await connect_pair(lp, Log("s"), clog)
        await wait_until(lambda: bool(sp) and sp[0].t is not None)
        t.pause_reading()
        clog("is_reading", t.is_reading())
        sp[0].t.write(b"while paused")
        await asyncio.sleep(0.2)
        clog("received while paused", repr(p.received))
        t.resume_reading()
        clog("is_reading", t.is_reading())
        await wait_until(lambda: p.received == "while paused")
        clog("received", repr(p.received))
        p.close()
        await p.lost
        await stop(srv)

    run(body)
    clog.show()


@scenario
def set_protocol_switches_the_receiver():
    log = Log("log")

    class First(Rec):
        def data_received(self, d):
            super().data_received(d)
            self.log("first got", d.decode())
            self.t.set_protocol(self.second)
            self.log("get_protocol is second", self.t.get_protocol() is self.second)

    async def body(lp):
        second = Rec(lp, Log("second"))
        second.on_data = lambda p, d: log("second got", d.decode())

        def sfactory():
            p = First(lp, log)
            p.second = second
            return p

        srv, port = await tls_server(lp, sfactory)
        t, p = await lp.create_connection(lambda: Rec(lp, Log("c")), HOST, port,
                                          ssl=client_ctx(), server_hostname="localhost")
        t.write(b"one")
        await wait_until(lambda: len(log.lines) >= 3)
        t.write(b"two")
        await wait_until(lambda: second.received == "two")
        p.close()
        await second.lost
        log("second's events", second.log.lines)
        await stop(srv)

    run(body)
    log.show()


@scenario
def buffered_protocol_over_tls():
    log = Log("server")

    class Buf(asyncio.BufferedProtocol):
        def __init__(self, lp):
            self.buf = bytearray(4)  # small: a record takes several get_buffer calls
            self.got = b""
            self.lost = lp.create_future()

        def connection_made(self, t):
            log("connection_made")

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, n):
            if not log.lines or log.lines[-1] != "buffer_updated":
                log("buffer_updated")
            self.got += bytes(self.buf[:n])

        def eof_received(self):
            log("eof_received")

        def connection_lost(self, exc):
            log("connection_lost", ename(exc), "got", repr(self.got.decode()))
            self.lost.set_result(None)

    async def body(lp):
        sp = []
        srv, port = await tls_server(lp, lambda: sp.append(Buf(lp)) or sp[-1])
        t, p = await lp.create_connection(lambda: Rec(lp, Log("c")), HOST, port,
                                          ssl=client_ctx(), server_hostname="localhost")
        t.write(b"0123456789abcdef")
        await wait_until(lambda: bool(sp) and len(sp[0].got) == 16)
        p.close()
        await sp[0].lost
        await p.lost
        await stop(srv)

    run(body)
    log.show()


if __name__ == "__main__":
    main()
