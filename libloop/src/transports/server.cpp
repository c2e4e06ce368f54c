// loop::Server: listening sockets watched through asio, accepting as asyncio's
// _accept_connection does.
#include "loop/server.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "loop/tasks.hpp"
#include "tls/ssl_socket.hpp"
#include "transports/socket_transport.hpp"
#include "transports/socket_utils.hpp"

namespace loop {

namespace {
// asyncio's constants.ACCEPT_RETRY_DELAY: how long accepting pauses when out of descriptors.
constexpr double kAcceptRetryDelay = 1.0;
}  // namespace

struct Server::Listener {
  Listener(EventLoop& loop, int fd_)
      : fd(fd_), addr(detail::sockname(fd_)), sock(detail::asio_socket(loop, fd_, addr.family())) {}
  int fd;
  SocketAddress addr;
  detail::AsioSocket sock;  // owns fd
  bool active = false, waiting = false, queued = false;
  detail::HandleRef handle;  // persistent: accept_ready for this socket
};

Server::Server(EventLoop& loop, std::vector<int> fds, ProtocolFactory factory, int backlog)
    : loop_(&loop),
      factory_(std::move(factory)),
      backlog_(backlog),
      id_(detail::next_transport_id()) {
  for (int fd : fds) {
    auto l = std::make_unique<Listener>(loop, fd);
    Listener* lp = l.get();
    l->handle = detail::make_handle(named("BaseSelectorEventLoop._accept_connection", [this, lp] {
      lp->queued = false;
      if (!lp->active) return;
      auto keep = shared_from_this();
      try {
        accept_ready(*lp);
      } catch (...) {
        // asyncio's reader stays registered when _accept_connection raises: wait again,
        // and let the loop report it ("Exception in callback ...") as asyncio's does.
        listen_on(*lp);
        throw;
      }
      listen_on(*lp);
    }));
    l->handle->kind = detail::HandleKind::io;
    listeners_.push_back(std::move(l));
  }
}

Server::~Server() {
  for (auto& l : listeners_) l->handle->cancelled = true;
}

std::vector<SocketAddress> Server::sockets() const {
  std::vector<SocketAddress> out;
  if (!closed_)
    for (auto& l : listeners_) out.push_back(l->addr);
  return out;
}

std::vector<int> Server::socket_fds() const {
  std::vector<int> out;
  if (!closed_)
    for (auto& l : listeners_) out.push_back(l->fd);
  return out;
}

void Server::start_listening() {
  if (serving_) return;
  if (closed_) throw std::runtime_error("Server is closed");
  serving_ = true;
  for (auto& l : listeners_) {
    if (::listen(l->fd, backlog_) < 0)
      throw detail::os_error(errno, "listen on " + l->addr.to_string() + " failed");
    l->addr = detail::sockname(l->fd);
    if (loop_->tracer())
      loop_->trace_flat("server_listening", {{"server", id_}, {"address", l->addr.to_string()}});
    l->active = true;
    listen_on(*l);
  }
}

void Server::listen_on(Listener& l) {
  if (!l.active || l.waiting || l.queued || !l.sock.is_open()) return;
  l.waiting = true;
  l.sock.async_wait(asio::socket_base::wait_read,
                    [self = shared_from_this(), lp = &l](const asio::error_code& ec) {
                      lp->waiting = false;
                      if (ec == asio::error::operation_aborted || !lp->active) return;
                      if (self->loop_->is_closed()) return;
                      lp->queued = true;
                      self->loop_->schedule(lp->handle, "_accept_connection");
                    });
}

void Server::accept_ready(Listener& l) {
  // Up to backlog connections per readiness event, as asyncio.
  for (int i = 0; i < backlog_; ++i) {
    SocketAddress peer;
    socklen_t len = SocketAddress::capacity();
    int fd = ::accept4(l.fd, peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of a system resource: report it and stop accepting for a while, instead of
        // spinning on a listening socket that stays readable.
        ExceptionContext ctx;
        ctx.message = "socket.accept() out of system resource";
        ctx.exception = std::make_exception_ptr(detail::os_error(err, "accept"));
        ctx.socket = l.fd;
        loop_->call_exception_handler(ctx);
        l.active = false;
        loop_->call_later(kAcceptRetryDelay, [self = shared_from_this(), lp = &l] {
          if (!self->serving_ || self->closed_) return;
          lp->active = true;
          self->listen_on(*lp);
        });
        return;
      }
      throw detail::os_error(err, "accept on " + l.addr.to_string() + " failed");
    }
    peer.set_size(len);
    if (loop_->tracer())
      loop_->trace_flat("connection_accepted", {{"server", id_}, {"peer", peer.to_string()}});
    // asyncio makes the transport in a task (_accept_connection2): one iteration later.
    loop_->call_soon(
        named("BaseSelectorEventLoop._accept_connection2",
              [self = shared_from_this(), fd, peer] { self->accept_connection(fd, peer); }));
  }
}

void Server::accept_connection(int fd, SocketAddress peer) {
  detail::UniqueFd owned(fd);
  std::shared_ptr<Protocol> protocol;
  try {
    protocol = factory_();
    if (!protocol) throw std::runtime_error("protocol_factory returned no protocol");
    // Closed since the accept: asyncio's Server._attach refuses the transport (an assertion),
    // so the connection never reaches the protocol, and wait_closed() stays true to its word.
    if (closed_) throw std::runtime_error("the server was closed before the connection was made");
    if (ssl_) {
      detail::accept_ssl_connection(*loop_, owned.release(), peer, shared_from_this(), protocol,
                                    {ssl_, true, std::nullopt, ssl_handshake_timeout_});
      return;
    }
    auto transport = std::make_shared<detail::SocketTransport>(*loop_, owned.release(), protocol,
                                                               shared_from_this(), peer);
    transport->start(std::nullopt);
  } catch (...) {
    // The socket is closed either way (by owned or the transport): asyncio reports
    // it only in debug mode (_accept_connection2, 3.7 and 3.11 alike).
    if (!loop_->get_debug()) return;
    ExceptionContext ctx;
    ctx.message = "Error on transport creation for incoming connection";
    ctx.exception = std::current_exception();
    ctx.protocol = protocol.get();
    loop_->call_exception_handler(ctx);
  }
}

void Server::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& l : listeners_) {
    l->active = false;
    asio::error_code ec;
    l->sock.close(ec);
  }
  serving_ = false;
  if (loop_->tracer()) loop_->trace_flat("server_closed", {{"server", id_}});
  if (serving_forever_fut_ && !serving_forever_fut_->done()) serving_forever_fut_->cancel();
  serving_forever_fut_.reset();
  if (active_count_ == 0) wakeup();
}

void Server::detach() {
  if (active_count_ > 0) --active_count_;
  if (active_count_ == 0 && closed_) wakeup();
}

void Server::wakeup() {
  auto waiters = std::move(waiters_);
  waiters_.clear();
  waiters_done_ = true;
  for (auto& w : waiters)
    if (!w.done()) w.set_result();
}

Coroutine<void> Server::start_serving() {
  auto self = shared_from_this();
  start_listening();
  co_await sleep(0);  // one iteration, so that the readers are in place (asyncio)
}

Coroutine<void> Server::wait_closed() {
  auto self = shared_from_this();
  if (waiters_done_) co_return;
  Future<void> waiter = loop_->create_future<void>();
  waiters_.push_back(waiter);
  co_await waiter;
}

Coroutine<void> Server::serve_forever() {
  auto self = shared_from_this();
  if (serving_forever_fut_)
    throw std::runtime_error("server " + std::to_string(id_) +
                             " is already being awaited on serve_forever()");
  if (closed_) throw std::runtime_error("server " + std::to_string(id_) + " is closed");
  start_listening();
  Future<void> fut = loop_->create_future<void>();
  serving_forever_fut_ = fut;
  std::exception_ptr cancelled;
  try {
    co_await fut;
  } catch (const CancelledError&) {
    cancelled = std::current_exception();
  }
  if (serving_forever_fut_ && *serving_forever_fut_ == fut) serving_forever_fut_.reset();
  if (cancelled) {
    // Cancelling serve_forever closes the server (asyncio), and returns without waiting for
    // the connections: asyncio 3.7 awaited a wait_closed() that returned at once; with 3.12's
    // wait_closed() an idle client holds the cancellation forever (CPython issue 123720, a
    // regression there). Whoever wants the connections gone awaits wait_closed() after it.
    close();
    std::rethrow_exception(cancelled);
  }
}

}  // namespace loop
