// connect_read_pipe / connect_write_pipe (asyncio's unix_events), and the two helpers the pipe
// transports share: which fds are accepted, and writing without SIGPIPE.
#include "transports/pipe_transport.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "io/no_sigpipe.hpp"
#include "loop/loop.hpp"

namespace loop::detail {

bool check_pipe_fd(int fd, const char* message) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw std::system_error(errno, std::generic_category(), "fstat");
  if (!(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode)))
    throw std::invalid_argument(message);
  return S_ISSOCK(st.st_mode);
}

// SIGPIPE policy (documented in event_loop.hpp): the library never changes the process's
// SIGPIPE disposition. Sockets use MSG_NOSIGNAL; write(2) to a pipe without a reader raises
// SIGPIPE in the writing thread, taken back by call_without_sigpipe (io/no_sigpipe.hpp).
ssize_t write_no_sigpipe(int fd, bool is_socket, const char* data, std::size_t size) {
  if (is_socket) return ::send(fd, data, size, MSG_NOSIGNAL);
  return call_without_sigpipe(size, [&] { return ::write(fd, data, size); });
}

namespace {
// The shared half of connect_read_pipe / connect_write_pipe: make the transport, wait for
// connection_made to have run, close the transport if that failed.
template <class Impl, class Interface, class P>
Coroutine<std::shared_ptr<Interface>> start_pipe_transport(
    EventLoop& lp, std::function<std::shared_ptr<P>()> protocol_factory, int fd) {
  lp.check_closed();
  if (lp.get_debug()) lp.check_thread();
  auto protocol = protocol_factory();
  if (!protocol) throw std::invalid_argument("protocol_factory returned no protocol");
  auto transport = std::make_shared<Impl>(lp, fd, protocol);
  Future<void> waiter = lp.create_future<void>();
  transport->start(waiter);
  std::exception_ptr failed;
  try {
    co_await waiter;
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    transport->close();
    std::rethrow_exception(failed);
  }
  co_return std::shared_ptr<Interface>(transport);
}
}  // namespace

Coroutine<std::shared_ptr<ReadTransport>> connect_read_pipe(
    EventLoop& lp, std::function<std::shared_ptr<Protocol>()> protocol_factory, int fd) {
  return start_pipe_transport<ReadPipeTransport, ReadTransport>(lp, std::move(protocol_factory),
                                                                fd);
}

Coroutine<std::shared_ptr<WriteTransport>> connect_write_pipe(
    EventLoop& lp, std::function<std::shared_ptr<BaseProtocol>()> protocol_factory, int fd) {
  return start_pipe_transport<WritePipeTransport, WriteTransport>(lp, std::move(protocol_factory),
                                                                  fd);
}

}  // namespace loop::detail
