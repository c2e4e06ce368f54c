// asio_echo: a plain standalone-asio echo server (completion handlers, one thread), the backend
// libloop is built on with nothing in between: what libloop's own layers add shows against it.
//   asio_echo [--port P] [--unix PATH]      prints "listening on 127.0.0.1:PORT"
#include <asio.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

template <class Socket>
class Session : public std::enable_shared_from_this<Session<Socket>> {
 public:
  explicit Session(Socket s) : socket_(std::move(s)) {}
  void start() { read(); }

 private:
  void read() {
    auto self = this->shared_from_this();
    socket_.async_read_some(asio::buffer(buf_), [self](std::error_code ec, std::size_t n) {
      if (!ec) self->write(n);
    });
  }
  void write(std::size_t n) {
    auto self = this->shared_from_this();
    asio::async_write(socket_, asio::buffer(buf_, n), [self](std::error_code ec, std::size_t) {
      if (!ec) self->read();
    });
  }
  Socket socket_;
  char buf_[256 * 1024];  // as epoll_echo.c's buffer
};

template <class Acceptor>
void accept(Acceptor& acceptor) {
  acceptor.async_accept(
      [&acceptor](std::error_code ec, typename Acceptor::protocol_type::socket s) {
        if (!ec) {
          if constexpr (std::is_same_v<typename Acceptor::protocol_type, asio::ip::tcp>)
            s.set_option(asio::ip::tcp::no_delay(true));
          std::make_shared<Session<decltype(s)>>(std::move(s))->start();
        }
        accept(acceptor);
      });
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  std::string unix_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--unix") && i + 1 < argc) {
      unix_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: asio_echo [--port P] [--unix PATH]\n");
      return 2;
    }
  }
  asio::io_context io(1);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) { io.stop(); });
  if (!unix_path.empty()) {
    ::unlink(unix_path.c_str());
    asio::local::stream_protocol::acceptor acceptor(io, {unix_path});
    std::printf("listening on unix:%s\n", unix_path.c_str());
    std::fflush(stdout);
    accept(acceptor);
    io.run();
    ::unlink(unix_path.c_str());
  } else {
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), port});
    acceptor.listen(4096);
    std::printf("listening on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
    std::fflush(stdout);
    accept(acceptor);
    io.run();
  }
  return 0;
}
