// The streams echo client and server (the asyncio docs' "TCP echo client/server using
// streams" examples) in one program: a server on 127.0.0.1 port 0, a client that sends a
// message, reads the echo and closes, then the server is closed.
// Usage: streams_echo [MESSAGE]
#include <cstdio>
#include <loop/loop.hpp>
#include <string>

loop::Coroutine<void> handle_echo(std::shared_ptr<loop::StreamReader> reader,
                                  std::shared_ptr<loop::StreamWriter> writer) {
  std::string data = co_await reader->read(100);
  // None (an empty std::any) if the peer was gone before the connection was set up.
  auto addr = writer->get_extra_info("peername");
  auto* peer = std::any_cast<loop::SocketAddress>(&addr);
  std::printf("Received \"%s\" from %s\n", data.c_str(), peer ? peer->to_string().c_str() : "None");
  std::printf("Send: \"%s\"\n", data.c_str());
  writer->write(data);
  co_await writer->drain();
  std::printf("Close the connection\n");
  writer->close();
  co_await writer->wait_closed();
}

loop::Coroutine<void> tcp_echo_client(std::string message, int port) {
  auto [reader, writer] = co_await loop::open_connection("127.0.0.1", port);
  std::printf("Send: \"%s\"\n", message.c_str());
  writer->write(message);
  co_await writer->drain();
  std::string data = co_await reader->read(100);
  std::printf("Received: \"%s\"\n", data.c_str());
  std::printf("Close the connection\n");
  writer->close();
  co_await writer->wait_closed();
}

int main(int argc, char** argv) {
  std::string message = argc > 1 ? argv[1] : "Hello World!";
  loop::EventLoop lp;
  auto main_coro = [&]() -> loop::Coroutine<void> {
    auto server = co_await loop::start_server(handle_echo, "127.0.0.1", 0);
    int port = server->sockets().at(0).port();
    std::printf("Serving on %s\n", server->sockets().at(0).to_string().c_str());
    co_await tcp_echo_client(message, port);
    server->close();
    co_await server->wait_closed();
  };
  lp.run_until_complete(main_coro());
  lp.close();
}
