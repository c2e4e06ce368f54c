/* epoll_echo: a minimal hand-written epoll echo server, the practical limit for one core.
 *   epoll_echo [--port P] [--unix PATH] [--udp]     (127.0.0.1, port 0 by default)
 * Prints "listening on 127.0.0.1:PORT" (or "listening on unix:PATH") once it accepts.
 * Level-triggered; reads into one shared 256 KiB buffer and writes straight back; only what the
 * socket does not take is kept per connection (and reading stops until it has drained). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct conn {
  int fd;
  char* pending; /* bytes the socket did not take yet */
  size_t len, off;
};

static char buf[256 * 1024];
static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int serve_udp(int fd) {
  while (!stop) {
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr*)&peer, &plen);
    if (n < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    sendto(fd, buf, (size_t)n, 0, (struct sockaddr*)&peer, plen);
  }
  return 0;
}

static void drop(int ep, struct conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c);
}

/* Writes what is pending; returns 1 when all is written, 0 when it must wait, -1 on error. */
static int flush_pending(struct conn* c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    c->off += (size_t)n;
  }
  c->len = c->off = 0;
  return 1;
}

static void set_events(int ep, struct conn* c, unsigned events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

int main(int argc, char** argv) {
  int port = 0, udp = 0;
  const char* unix_path = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--unix") && i + 1 < argc)
      unix_path = argv[++i];
    else if (!strcmp(argv[i], "--udp"))
      udp = 1;
    else if (!strcmp(argv[i], "--host") && i + 1 < argc)
      ++i; /* always 127.0.0.1 */
    else {
      fprintf(stderr, "usage: epoll_echo [--port P] [--unix PATH] [--udp]\n");
      return 2;
    }
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);

  int lfd;
  if (unix_path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", unix_path);
    unlink(unix_path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (bind(lfd, (struct sockaddr*)&sa, sizeof sa) < 0) {
      perror("bind");
      return 1;
    }
  } else {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET,
                 (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | (udp ? 0 : SOCK_NONBLOCK), 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr*)&sa, sizeof sa) < 0) {
      perror("bind");
      return 1;
    }
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr*)&sa, &len);
    port = ntohs(sa.sin_port);
  }
  if (!udp && listen(lfd, 4096) < 0) {
    perror("listen");
    return 1;
  }
  if (unix_path)
    printf("listening on unix:%s\n", unix_path);
  else
    printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  if (udp) return serve_udp(lfd);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event events[256];
  while (!stop) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int k = 0; k < n; ++k) {
      struct conn* c = events[k].data.ptr;
      if (!c) { /* the listening socket */
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          int one = 1;
          if (!unix_path) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          c->fd = fd;
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      if (events[k].events & EPOLLOUT) {
        int r = flush_pending(c);
        if (r < 0) {
          drop(ep, c);
          continue;
        }
        if (r == 1) set_events(ep, c, EPOLLIN);
        continue;
      }
      ssize_t r = recv(c->fd, buf, sizeof buf, 0);
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(ep, c);
        continue;
      }
      ssize_t w = send(c->fd, buf, (size_t)r, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno != EAGAIN) {
          drop(ep, c);
          continue;
        }
        w = 0;
      }
      if (w < r) { /* keep the rest; stop reading until it is written */
        c->pending = realloc(c->pending, (size_t)(r - w));
        memcpy(c->pending, buf + w, (size_t)(r - w));
        c->len = (size_t)(r - w);
        c->off = 0;
        set_events(ep, c, EPOLLOUT);
      }
    }
  }
  if (unix_path) unlink(unix_path);
  return 0;
}
