// Nesting asio's reactor inside the loop's Poller (see poller.hpp).
//
// The loop blocks in the Poller's epoll_wait, where asio's own epoll fd is one of the fds
// watched: when it is readable, asio has I/O to report, and io_context::poll() runs it.
// One case asio does not announce through that fd: a handler posted (a cancelled wait's
// completion, say) while no thread runs the io_context only goes on asio's queue, because
// asio interrupts its reactor only while a thread blocks in it ("task_interrupted_" false).
// So after each io_context::poll() the loop clears that flag, as if a thread were blocked
// in asio: the next post then interrupts the reactor, which makes its epoll fd readable.
// The flag is written without asio's mutex: only the loop's thread uses the io_context
// (other threads reach the loop through call_soon_threadsafe and the Poller's eventfd;
// signal handlers through asio's self-pipe, which is an fd in asio's reactor).
//
// asio offers neither the fd nor the flag publicly; they are reached through the explicit
// instantiation rule ([temp.explicit]: access is not checked for the names in it), so a
// rename in a future asio fails the build here rather than misbehaving.
#pragma once

#include <asio/io_context.hpp>

namespace loop::detail {

/// asio's reactor epoll fd (the reactor is created if it did not exist yet).
int asio_reactor_fd(asio::io_context& io);
/// Lets the next handler posted to `io` interrupt its reactor (call after each poll()).
void asio_expect_interrupts(asio::io_context& io);

}  // namespace loop::detail
