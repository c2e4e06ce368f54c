// asio_nesting.hpp: reaching asio's reactor fd and its "interrupted" flag.
#include "io/asio_nesting.hpp"

#include <asio/detail/epoll_reactor.hpp>
#include <asio/detail/scheduler.hpp>

namespace loop::detail {

namespace {

// The explicit instantiation below stores a pointer to a private member in a friend
// function that the tag type declares.
template <class Tag, typename Tag::type Member>
struct MemberAccess {
  friend typename Tag::type member(Tag) { return Member; }
};

struct ReactorEpollFd {
  using type = int asio::detail::epoll_reactor::*;
  friend type member(ReactorEpollFd);
};
template struct MemberAccess<ReactorEpollFd, &asio::detail::epoll_reactor::epoll_fd_>;

struct SchedulerTaskInterrupted {
  using type = bool asio::detail::scheduler::*;
  friend type member(SchedulerTaskInterrupted);
};
template struct MemberAccess<SchedulerTaskInterrupted, &asio::detail::scheduler::task_interrupted_>;

}  // namespace

int asio_reactor_fd(asio::io_context& io) {
  auto& reactor = asio::use_service<asio::detail::epoll_reactor>(io);
  reactor.init_task();  // the scheduler runs the reactor from now on
  return reactor.*member(ReactorEpollFd{});
}

void asio_expect_interrupts(asio::io_context& io) {
  auto& scheduler = asio::use_service<asio::detail::scheduler>(io);
  scheduler.*member(SchedulerTaskInterrupted{}) = false;
}

}  // namespace loop::detail
