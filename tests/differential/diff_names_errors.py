"""Differential scenarios of argument validation, connection failures and name resolution
(the libloop half: diff_names_errors.cpp).

An OSError is printed as its type, errno and strerror (the C++ half prints the code and
what() without the ": <strerror>" system_error appends); any other error as its type and
str(). Ports and paths that vary by run are printed as PORT and PATH."""
import asyncio
import os
import shutil
import socket
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402


def run(coro_fn, debug=False):
    """Runs coro_fn() on a new loop until done, then closes the loop."""
    lp = asyncio.new_event_loop()
    lp.set_debug(debug)
    try:
        lp.run_until_complete(coro_fn())
    finally:
        lp.close()


def norm(s, port=None, path=None):
    s = str(s)
    if path is not None:
        s = s.replace(path, "PATH")
    if port is not None:
        s = s.replace(str(port), "PORT")
    return s


def say_exc(what, e, port=None, path=None):
    name = type(e).__name__
    if isinstance(e, OSError) and e.errno is not None:
        say(what, name, e.errno, norm(e.strerror, port, path))
    else:
        say(what, name, norm(e, port, path))


def say_kind(what, e):
    """Type and errno only: libloop's message names the address where asyncio re-raises the
    bare OSError (README, "departs from asyncio on purpose")."""
    say(what, type(e).__name__, e.errno if isinstance(e, OSError) and e.errno else 0)


def prefix(s, upto):
    """The text of a message up to `upto` (the rest names an object that varies)."""
    i = s.find(upto)
    return s if i < 0 else s[:i + len(upto)]


class Proto(asyncio.Protocol):
    pass


class DProto(asyncio.DatagramProtocol):
    pass


def refused_port():
    """A port on 127.0.0.1 that refuses connections: bound, never listening (kept bound)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def tmpdir():
    return tempfile.mkdtemp(prefix="diffne")


def ai_line(info):
    family, type_, proto, canon, sockaddr = info
    return f"{int(family)} {int(type_)} {proto} {canon!r} {sockaddr!r}"


# ---- argument validation -----------------------------------------------------------------------

@scenario
def connection_argument_errors_in_asyncio_order():
    async def body():
        lp = asyncio.get_running_loop()
        s = socket.socket()
        ctx = ssl.create_default_context()
        cases = [
            ("host/port and sock", dict(host="127.0.0.1", port=1, sock=s)),
            ("neither", dict()),
            ("server_hostname without ssl, with host and sock",
             dict(host="127.0.0.1", port=1, sock=s, server_hostname="x")),
            ("ssl without host", dict(ssl=ctx, sock=s)),
            ("ssl with port only", dict(ssl=ctx, port=1)),
            ("handshake timeout without ssl", dict(host="127.0.0.1", port=1, sock=s,
                                                   ssl_handshake_timeout=1.0)),
            ("handshake timeout without ssl and no sock", dict(ssl_handshake_timeout=1.0)),
            ("ssl without host and handshake timeout", dict(ssl=ctx, ssl_handshake_timeout=1.0)),
        ]
        for label, kw in cases:
            try:
                await lp.create_connection(Proto, **kw)
                say(label, "connected?")
            except Exception as e:
                say_exc(label, e)
        s.close()
    run(body)


@scenario
def connection_sock_must_be_a_stream_socket():
    async def body():
        lp = asyncio.get_running_loop()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await lp.create_connection(Proto, sock=u)
        except ValueError as e:
            say("udp sock:", type(e).__name__, prefix(str(e), "was expected"))
        u.close()
    run(body)


@scenario
def unix_connection_argument_errors():
    async def body():
        lp = asyncio.get_running_loop()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctx = ssl.create_default_context()
        cases = [
            ("path and sock", dict(path="/nonexistent/x", sock=s)),
            ("neither", dict()),
            ("ssl without server_hostname", dict(path="/nonexistent/x", ssl=ctx)),
            ("server_hostname without ssl", dict(path="/nonexistent/x", server_hostname="h")),
            ("handshake timeout without ssl", dict(sock=s, ssl_handshake_timeout=2.0)),
        ]
        for label, kw in cases:
            try:
                await lp.create_unix_connection(Proto, **kw)
                say(label, "connected?")
            except Exception as e:
                say_exc(label, e)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            await lp.create_unix_connection(Proto, sock=t)
        except ValueError as e:
            say("inet sock:", type(e).__name__, prefix(str(e), "was expected"))
        t.close()
        s.close()
    run(body)


@scenario
def server_argument_errors():
    async def body():
        lp = asyncio.get_running_loop()
        s = socket.socket()
        cases = [
            ("host/port and sock", dict(host="127.0.0.1", port=0, sock=s)),
            ("neither", dict()),
            ("handshake timeout without ssl", dict(host="127.0.0.1", port=0,
                                                   ssl_handshake_timeout=1.0)),
            ("handshake timeout without ssl, and sock", dict(host="127.0.0.1", port=0, sock=s,
                                                             ssl_handshake_timeout=1.0)),
        ]
        for label, kw in cases:
            try:
                srv = await lp.create_server(Proto, **kw)
                say(label, "serving?")
                srv.close()
            except Exception as e:
                say_exc(label, e)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await lp.create_server(Proto, sock=u)
        except ValueError as e:
            say("udp sock:", type(e).__name__, prefix(str(e), "was expected"))
        u.close()
        s.close()
    run(body)


@scenario
def unix_server_argument_errors():
    async def body():
        lp = asyncio.get_running_loop()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cases = [
            ("path and sock", dict(path="/nonexistent/x", sock=s)),
            ("neither", dict()),
            ("handshake timeout without ssl", dict(path="/nonexistent/x",
                                                   ssl_handshake_timeout=1.0)),
        ]
        for label, kw in cases:
            try:
                srv = await lp.create_unix_server(Proto, **kw)
                say(label, "serving?")
                srv.close()
            except Exception as e:
                say_exc(label, e)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            await lp.create_unix_server(Proto, sock=t)
        except ValueError as e:
            say("inet sock:", type(e).__name__, prefix(str(e), "was expected"))
        t.close()
        s.close()
    run(body)


@scenario
def datagram_argument_errors():
    async def body():
        lp = asyncio.get_running_loop()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cases = [
            ("no address, no family", dict()),
            ("sock with options", dict(sock=u, proto=17, flags=socket.AI_PASSIVE,
                                       reuse_port=True, allow_broadcast=True)),
            ("local v4, remote v6", dict(local_addr=("127.0.0.1", 0),
                                         remote_addr=("::1", 9))),
        ]
        for label, kw in cases:
            try:
                tr, _ = await lp.create_datagram_endpoint(DProto, **kw)
                say(label, "created?")
                tr.close()
            except Exception as e:
                # The list of options after "specified." names reuse_address=<object ...> in
                # 3.7 (its unset marker is true), not in 3.11: only the sentence is compared.
                say(label, type(e).__name__, prefix(str(e), "sock is specified."))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            await lp.create_datagram_endpoint(DProto, sock=t)
        except ValueError as e:
            say("tcp sock:", type(e).__name__, prefix(str(e), "was expected"))
        t.close()
        u.close()
    run(body)


@scenario
def sock_ops_refuse_a_blocking_socket_in_debug_mode():
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()  # blocking
        for label, coro in (("sock_recv", lambda: lp.sock_recv(a, 10)),
                            ("sock_sendall", lambda: lp.sock_sendall(a, b"x")),
                            ("sock_accept", lambda: lp.sock_accept(a))):
            try:
                await coro()
                say(label, "done?")
            except Exception as e:
                say_exc(label, e)
        c = socket.socket()
        try:
            await lp.sock_connect(c, ("127.0.0.1", 1))
        except Exception as e:
            say_exc("sock_connect", e)
        c.close()
        a.close()
        b.close()
    run(body, debug=True)


# ---- connection failures -----------------------------------------------------------------------

@scenario
def create_connection_refused_on_127_0_0_1():
    async def body():
        lp = asyncio.get_running_loop()
        holder, port = refused_port()
        try:
            await lp.create_connection(Proto, "127.0.0.1", port)
        except Exception as e:
            say_exc("refused:", e, port)
            say("OSError:", isinstance(e, OSError))
        holder.close()
    run(body)


@scenario
def create_connection_refused_on_both_loopbacks():
    """No host: getaddrinfo gives ::1 and 127.0.0.1; both refuse: "Multiple exceptions"."""
    async def body():
        lp = asyncio.get_running_loop()
        for _ in range(50):  # a port free on both families
            h6 = socket.socket(socket.AF_INET6)
            h6.bind(("::1", 0))
            port = h6.getsockname()[1]
            h4 = socket.socket()
            try:
                h4.bind(("127.0.0.1", port))
                break
            except OSError:
                h4.close()
                h6.close()
        try:
            await lp.create_connection(Proto, None, port)
        except Exception as e:
            say_exc("refused:", e, port)
        h4.close()
        h6.close()
    run(body)


@scenario
def sock_connect_refused_on_127_0_0_1():
    async def body():
        lp = asyncio.get_running_loop()
        holder, port = refused_port()
        c = socket.socket()
        c.setblocking(False)
        try:
            await lp.sock_connect(c, ("127.0.0.1", port))
        except Exception as e:
            say_exc("refused:", e, port)
        c.close()
        holder.close()
    run(body)


@scenario
def open_connection_refused_on_127_0_0_1():
    async def body():
        holder, port = refused_port()
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except Exception as e:
            say_exc("refused:", e, port)
        holder.close()
    run(body)


@scenario
def unix_connection_to_a_missing_path():
    async def body():
        lp = asyncio.get_running_loop()
        d = tmpdir()
        path = os.path.join(d, "missing.sock")
        try:
            await lp.create_unix_connection(Proto, path)
        except Exception as e:
            say_kind("missing:", e)
        shutil.rmtree(d)
    run(body)


@scenario
def unix_connection_to_a_socket_nobody_listens_on():
    async def body():
        lp = asyncio.get_running_loop()
        d = tmpdir()
        path = os.path.join(d, "dead.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)  # bound, never listening
        try:
            await lp.create_unix_connection(Proto, path)
        except Exception as e:
            say_kind("refused:", e)
        s.close()
        shutil.rmtree(d)
    run(body)


@scenario
def create_server_bind_in_use():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await lp.create_server(Proto, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            await lp.create_server(Proto, "127.0.0.1", port)
        except Exception as e:
            say_exc("in use:", e, port)
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def create_connection_local_addr_in_use():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await lp.create_server(Proto, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            await lp.create_connection(Proto, "127.0.0.1", port,
                                       local_addr=("127.0.0.1", port))
        except Exception as e:
            say_exc("local_addr in use:", e, port)
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def unix_server_on_a_regular_file():
    async def body():
        lp = asyncio.get_running_loop()
        d = tmpdir()
        path = os.path.join(d, "file")
        with open(path, "w") as f:
            f.write("x")
        try:
            await lp.create_unix_server(Proto, path)
        except Exception as e:
            say_exc("regular file:", e, path=path)
        say("file kept:", os.path.isfile(path))
        shutil.rmtree(d)
    run(body)


@scenario
def unix_server_in_a_missing_directory():
    async def body():
        lp = asyncio.get_running_loop()
        d = tmpdir()
        path = os.path.join(d, "nodir", "s.sock")
        try:
            await lp.create_unix_server(Proto, path)
        except Exception as e:
            say_kind("missing dir:", e)
        shutil.rmtree(d)
    run(body)


@scenario
def datagram_bind_in_use():
    async def body():
        lp = asyncio.get_running_loop()
        t1, _ = await lp.create_datagram_endpoint(DProto, local_addr=("127.0.0.1", 0))
        port = t1.get_extra_info("sockname")[1]
        try:
            await lp.create_datagram_endpoint(DProto, local_addr=("127.0.0.1", port))
        except Exception as e:
            say_kind("in use:", e)
        t1.close()
    run(body)


# ---- getaddrinfo / getnameinfo -----------------------------------------------------------------

@scenario
def getaddrinfo_numeric_ipv4_every_type():
    async def body():
        lp = asyncio.get_running_loop()
        for info in await lp.getaddrinfo("127.0.0.1", 8080):
            say(ai_line(info))
    run(body)


@scenario
def getaddrinfo_numeric_ipv6_port_as_string():
    async def body():
        lp = asyncio.get_running_loop()
        for info in await lp.getaddrinfo("::1", "8080", type=socket.SOCK_STREAM):
            say(ai_line(info))
    run(body)


@scenario
def getaddrinfo_passive_without_host():
    async def body():
        lp = asyncio.get_running_loop()
        for fam in (socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC):
            for info in await lp.getaddrinfo(None, 80, family=fam, type=socket.SOCK_STREAM,
                                             flags=socket.AI_PASSIVE):
                say(int(fam), ai_line(info))
    run(body)


@scenario
def getaddrinfo_service_name_and_type_filters():
    async def body():
        lp = asyncio.get_running_loop()
        for info in await lp.getaddrinfo("127.0.0.1", "http"):
            say("http:", ai_line(info))
        for info in await lp.getaddrinfo("127.0.0.1", 53, type=socket.SOCK_DGRAM):
            say("dgram:", ai_line(info))
        for info in await lp.getaddrinfo("127.0.0.1", 53, proto=socket.IPPROTO_TCP):
            say("tcp proto:", ai_line(info))
    run(body)


@scenario
def getaddrinfo_errors():
    async def body():
        lp = asyncio.get_running_loop()
        for label, host, port, flags in (("bad service", "127.0.0.1", "nosuchservice", 0),
                                         ("numerichost", "localhost", "80",
                                          socket.AI_NUMERICHOST),
                                         ("bad numeric", "127.0.0.256", "80",
                                          socket.AI_NUMERICHOST),
                                         ("numericserv", "127.0.0.1", "http",
                                          socket.AI_NUMERICSERV)):
            try:
                await lp.getaddrinfo(host, port, flags=flags)
                say(label, "resolved?")
            except socket.gaierror as e:
                say(label, type(e).__name__, isinstance(e, OSError), e.errno, e.strerror)
    run(body)


@scenario
def getnameinfo_numeric_and_service_names():
    async def body():
        lp = asyncio.get_running_loop()
        r = await lp.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        say("numeric:", r)
        r = await lp.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST)
        say("service:", r)
        r = await lp.getnameinfo(("::1", 443), socket.NI_NUMERICHOST)
        say("v6:", r)
        r = await lp.getnameinfo(("127.0.0.1", 53), socket.NI_NUMERICHOST | socket.NI_DGRAM)
        say("dgram:", r)
    run(body)


@scenario
def create_connection_bad_numeric_host_flag():
    async def body():
        lp = asyncio.get_running_loop()
        try:
            await lp.create_connection(Proto, "localhost", 80, flags=socket.AI_NUMERICHOST)
        except socket.gaierror as e:
            say("gaierror", isinstance(e, OSError), e.errno, e.strerror)
    run(body)


if __name__ == "__main__":
    main()
