// loopctl watch-fd: the spec's "Watch a file descriptor for read events" example, and the same
// reader callback on a real descriptor (--fd N, --path P) until EOF.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

#include "command.hpp"

namespace loopctl {

struct Watched {
  loop::EventLoop& lp;
  int fd;
  bool raw;
  bool once;  // the example: one read, then stop
  bool failed = false;
  std::string error;
};

// External linkage: traces name the callback.
void reader(Watched* w) {
  char buf[65536];
  ssize_t n = ::read(w->fd, buf, w->once ? 100 : sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    w->failed = true;
    w->error = std::strerror(errno);
  }
  if (n > 0) {
    std::string data(buf, static_cast<std::size_t>(n));
    if (w->raw) {
      std::fwrite(data.data(), 1, data.size(), stdout);
    } else {
      // One line per chunk: a chunk's own trailing newline is not doubled.
      if (!data.empty() && data.back() == '\n') data.pop_back();
      std::printf("Received: %s\n", data.c_str());
    }
    std::fflush(stdout);
  }
  if (n <= 0 || w->once) {
    // We are done: unregister the file descriptor, stop the event loop.
    w->lp.remove_reader(w->fd);
    w->lp.stop();
  }
}

namespace {

// Why add_reader failed, in words. epoll refuses (EPERM) files that are always ready, such as
// /dev/null or /dev/zero, as the regular files refused before it is called.
std::string watch_error(const std::system_error& e) {
  if (e.code() == std::errc::operation_not_permitted)
    return "this file does not support waiting for readiness (epoll refuses it); watch a pipe, "
           "FIFO, tty or socket";
  return e.code().message();
}

class WatchFd final : public Command {
 public:
  const char* name() const override { return "watch-fd"; }
  const char* description() const override {
    return "add_reader() on a socketpair, as the documented example (prints 'Received: abc'); "
           "with --fd or --path, on a real descriptor (pipe, FIFO, tty, socket) until EOF";
  }
  void setup(CLI::App& app) override {
    auto* fd = app.add_option("--fd", fd_, "Watch this inherited file descriptor")
                   ->check(non_negative_number());
    auto* path = app.add_option("--path", path_, "Open and watch this path (a FIFO, a tty...)");
    fd->excludes(path);
    app.add_flag("--raw", raw_, "Write the data as it is, without 'Received: '");
  }

  int run(loop::EventLoop& lp) override {
    if (fd_ < 0 && path_.empty()) return run_example(lp);
    int fd = fd_;
    bool opened = false;
    if (!path_.empty()) {
      fd = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
      if (fd < 0) throw RuntimeFailure("cannot open " + path_ + ": " + std::strerror(errno));
      opened = true;
    } else if (::fcntl(fd, F_GETFD) < 0) {
      throw RuntimeFailure("cannot watch fd " + std::to_string(fd) + ": " + std::strerror(errno));
    }
    std::string what = path_.empty() ? "fd " + std::to_string(fd) : path_;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      if (opened) ::close(fd);
      throw RuntimeFailure("cannot watch " + what +
                           ": a regular file is always readable; watch a pipe, FIFO, tty or "
                           "socket");
    }
    int flags = ::fcntl(fd, F_GETFL);
    if (!(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);

    Watched w{lp, fd, raw_, false, false, {}};
    int caught = 0;
    stop_on_interrupt(lp, caught);
    try {
      lp.add_reader(fd, reader, &w);
    } catch (const std::system_error& e) {
      throw RuntimeFailure("cannot watch " + what + ": " + watch_error(e));
    } catch (const std::exception& e) {
      throw RuntimeFailure("cannot watch " + what + ": " + e.what());
    }
    lp.run_forever();
    lp.remove_reader(fd);
    lp.close();
    if (!(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags);  // the fd may be shared
    if (opened) ::close(fd);
    if (w.failed) throw RuntimeFailure("reading " + what + ": " + w.error);
    return caught ? 128 + caught : 0;
  }

 private:
  int run_example(loop::EventLoop& lp) {
    // Create a pair of connected file descriptors.
    int socks[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, socks) != 0)
      throw RuntimeFailure(std::string("socketpair: ") + std::strerror(errno));
    int rsock = socks[0], wsock = socks[1];
    Watched w{lp, rsock, raw_, true, false, {}};
    // Register the file descriptor for read event.
    lp.add_reader(rsock, reader, &w);
    // Simulate the reception of data from the network.
    lp.call_soon(
        loop::named("wsock.send", [wsock] { (void)::send(wsock, "abc", 3, MSG_NOSIGNAL); }));
    // Run the event loop.
    lp.run_forever();
    // We are done, close sockets and the event loop.
    ::close(rsock);
    ::close(wsock);
    lp.close();
    return 0;
  }

  int fd_ = -1;
  std::string path_;
  bool raw_ = false;
};

}  // namespace

std::unique_ptr<Command> make_watch_fd() {
  return std::make_unique<WatchFd>();
}

}  // namespace loopctl
