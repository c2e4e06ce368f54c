// Watch a file descriptor for read events (the asyncio docs' add_reader example): wait until a
// socket receives some data with add_reader, then stop the loop.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <loop/loop.hpp>
#include <string>

int main() {
  // Create a pair of connected file descriptors.
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
    std::perror("socketpair");
    return 1;
  }
  int rsock = fds[0], wsock = fds[1];
  loop::EventLoop loop;

  auto reader = [&] {
    char data[100];
    ssize_t n = ::recv(rsock, data, sizeof data, 0);
    std::printf("Received: %s\n",
                std::string(data, n > 0 ? static_cast<std::size_t>(n) : 0).c_str());
    // We are done: unregister the file descriptor.
    loop.remove_reader(rsock);
    // Stop the event loop.
    loop.stop();
  };

  // Register the file descriptor for read event.
  loop.add_reader(rsock, loop::named("reader", reader));

  // Simulate the reception of data from the network.
  loop.call_soon(loop::named("send", [wsock] { (void)::send(wsock, "abc", 3, MSG_NOSIGNAL); }));

  // Run the event loop.
  loop.run_forever();

  // We are done: close the sockets and the event loop.
  ::close(rsock);
  ::close(wsock);
  loop.close();
  return 0;
}
