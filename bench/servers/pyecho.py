"""Echo servers on asyncio or uvloop, as uvloop's vmbench (examples/bench/echoserver.py) has
them: protocol, streams and sock_* (sock_recv/sock_sendall), plus a UDP protocol server.

    pyecho.py --mode protocol|streams|sock|udp [--uvloop] [--port P] [--unix PATH]

Prints "listening on 127.0.0.1:PORT" (or "listening on unix:PATH") once it accepts; runs until
SIGTERM/SIGINT. Standard library only (uvloop when asked for).
"""
import argparse
import asyncio
import os
import resource
import signal
import socket
import sys

# streams: read(n) returns what is buffered, up to n: as epoll_echo.c and the C++ servers.
READ_SIZE = 256 * 1024
# sock_recv(n) allocates n bytes per call (vmbench uses 1000000): past 128 KiB every call is an
# mmap and munmap with page faults, which tripled uvloop-sock's cost; 64 KiB is its best.
SOCK_READ_SIZE = 64 * 1024


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.transport = None


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def echo_stream(reader, writer):
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()


async def echo_sock_client(loop, client):
    try:
        while True:
            data = await loop.sock_recv(client, SOCK_READ_SIZE)
            if not data:
                break
            await loop.sock_sendall(client, data)
    except (ConnectionError, OSError):
        pass
    client.close()


async def sock_server(loop, listener, tcp):
    while True:
        client, _ = await loop.sock_accept(listener)
        if tcp:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.create_task(echo_sock_client(loop, client))


def listening(sock):
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        print("listening on unix:%s" % name, flush=True)
    else:
        print("listening on %s:%d" % name[:2], flush=True)


async def main(args):
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopped.done() or stopped.set_result(None))
    tcp = args.unix is None
    if args.mode == "udp":
        transport, _ = await loop.create_datagram_endpoint(
            EchoDatagram, local_addr=("127.0.0.1", args.port))
        listening(transport.get_extra_info("socket"))
        await stopped
        transport.close()
        return
    if args.mode == "sock":
        if tcp:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", args.port))
        else:
            if os.path.exists(args.unix):
                os.unlink(args.unix)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(args.unix)
        listener.listen(4096)
        listener.setblocking(False)
        listening(listener)
        task = loop.create_task(sock_server(loop, listener, tcp))
        await stopped
        task.cancel()
        listener.close()
        return
    if args.mode == "streams":
        if tcp:
            server = await asyncio.start_server(echo_stream, "127.0.0.1", args.port, backlog=4096)
        else:
            server = await asyncio.start_unix_server(echo_stream, args.unix, backlog=4096)
    else:
        if tcp:
            server = await loop.create_server(EchoProtocol, "127.0.0.1", args.port, backlog=4096)
        else:
            server = await loop.create_unix_server(EchoProtocol, args.unix, backlog=4096)
    listening(server.sockets[0])
    await stopped
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["protocol", "streams", "sock", "udp"],
                        default="protocol")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.uvloop:
        import uvloop
        uvloop.install()
    asyncio.run(main(args))
    if args.unix and os.path.exists(args.unix):
        os.unlink(args.unix)
    sys.exit(0)
