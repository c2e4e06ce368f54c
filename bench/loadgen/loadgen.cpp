// loadgen: a request/response echo load generator on raw epoll, kept simple and cheap so that
// it is never the bottleneck (it does not use libloop on purpose). One thread, pinned to one CPU.
//
//   loadgen --tcp 127.0.0.1:PORT | --unix PATH | --udp 127.0.0.1:PORT
//           [-c CONNS] [-m BYTES] [-d SECONDS] [-w WARMUP] [--cpu N] [--server-pid PID]
//           [--idle N --hold SECONDS]
//
// Each connection sends one message of M bytes, waits for all M bytes to come back (checked byte
// for byte against what was sent), then sends the next. After the warm-up, requests are counted
// for D seconds; one JSON line goes to stdout. With --server-pid, the server's utime/stime (from
// /proc/PID/stat) are read at the start and end of the measured window, so the harness gets the
// server's CPU time over exactly the requests counted.
// --idle N: open N connections, echo one small message on each (so the server has accepted and
// set each one up), print {"idle_connected":N}, then hold them for --hold seconds (or until stdin
// closes) and exit.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double now_s() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

enum class Mode { tcp, unix_stream, udp };

struct Options {
  Mode mode = Mode::tcp;
  std::string target;
  int conns = 10;
  std::size_t msg = 1024;
  double duration = 3;
  double warmup = 1;
  int cpu = 0;
  long server_pid = 0;
  int idle = 0;
  double hold = 30;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr, "loadgen: %s\n", msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--tcp") {
      o.mode = Mode::tcp;
      o.target = next();
    } else if (a == "--unix") {
      o.mode = Mode::unix_stream;
      o.target = next();
    } else if (a == "--udp") {
      o.mode = Mode::udp;
      o.target = next();
    } else if (a == "-c") {
      o.conns = std::atoi(next());
    } else if (a == "-m") {
      o.msg = std::strtoul(next(), nullptr, 10);
    } else if (a == "-d") {
      o.duration = std::atof(next());
    } else if (a == "-w") {
      o.warmup = std::atof(next());
    } else if (a == "--cpu") {
      o.cpu = std::atoi(next());
    } else if (a == "--server-pid") {
      o.server_pid = std::atol(next());
    } else if (a == "--idle") {
      o.idle = std::atoi(next());
    } else if (a == "--hold") {
      o.hold = std::atof(next());
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (o.target.empty()) usage("give --tcp HOST:PORT, --unix PATH or --udp HOST:PORT");
  if (o.conns < 1 || o.msg < 1) usage("-c and -m must be positive");
  if (o.mode == Mode::udp && o.msg > 65507) usage("UDP messages are at most 65507 bytes");
  return o;
}

// utime and stime (clock ticks) of a process, summed over its threads; {-1,-1} if unreadable.
std::pair<long, long> proc_cpu(long pid) {
  if (pid <= 0) return {-1, -1};
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return {-1, -1};
  char buf[1024];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // The command name may contain spaces: fields resume after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return {-1, -1};
  long utime = -1, stime = -1;
  // Fields 3.. after ")": state(3) ... utime(14) stime(15).
  int field = 2;
  for (const char* s = p + 1; *s; ++s) {
    if (*s == ' ') {
      ++field;
      if (field == 14) utime = std::strtol(s + 1, nullptr, 10);
      if (field == 15) {
        stime = std::strtol(s + 1, nullptr, 10);
        break;
      }
    }
  }
  return {utime, stime};
}

int make_socket(const Options& o) {
  int fd;
  if (o.mode == Mode::unix_stream) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", o.target.c_str());
    socklen_t len = sizeof sa;
    if (o.target[0] == '@') {
      sa.sun_path[0] = 0;  // abstract namespace
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + o.target.size());
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) < 0) die("connect");
  } else {
    auto colon = o.target.rfind(':');
    if (colon == std::string::npos) usage("target must be HOST:PORT");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::atoi(o.target.c_str() + colon + 1)));
    if (inet_pton(AF_INET, o.target.substr(0, colon).c_str(), &sa.sin_addr) != 1)
      usage("HOST must be a numeric IPv4 address");
    fd = socket(AF_INET, (o.mode == Mode::udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("connect");
    if (o.mode == Mode::tcp) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
  }
  // Connected blocking (so that a full accept queue just waits); non-blocking from here on.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) std::fprintf(stderr, "loadgen: cannot pin\n");
}

struct Conn {
  int fd = -1;
  std::size_t offset = 0;  // where this request's bytes start in the pattern
  std::size_t sent = 0;
  std::size_t received = 0;
  double started = 0;
  bool want_out = false;
  bool dead = false;
};

int run_idle(const Options& o) {
  std::vector<int> fds;
  fds.reserve(o.idle);
  const char msg[16] = "idle-connection";
  for (int i = 0; i < o.idle; ++i) {
    int fd = make_socket(o);
    fds.push_back(fd);
    if (send(fd, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg) die("send");
  }
  // Read each echo back (blocking with poll), so every connection is known to be served.
  int errors = 0;
  for (int fd : fds) {
    char buf[16];
    std::size_t got = 0;
    while (got < sizeof buf) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) break;
      ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    if (got != sizeof buf || std::memcmp(buf, msg, sizeof buf) != 0) ++errors;
  }
  std::printf("{\"idle_connected\":%d,\"errors\":%d}\n", o.idle, errors);
  std::fflush(stdout);
  pollfd p{0, POLLIN, 0};
  poll(&p, 1, static_cast<int>(o.hold * 1000));  // until stdin closes or the time is up
  for (int fd : fds) close(fd);
  return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  raise_nofile();
  pin(o.cpu);
  if (o.idle > 0) return run_idle(o);

  // A pattern longer than a message: request k starts at a different offset, so an echo of the
  // wrong bytes (stale, reordered, another connection's) does not compare equal.
  const std::size_t kShift = 251;
  std::vector<char> pattern(o.msg + kShift);
  for (std::size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = static_cast<char>((i * 7 + (i >> 8)) & 0xff);
  std::vector<char> rbuf(std::max<std::size_t>(o.msg, 65536) + 1);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  std::vector<Conn> conns(o.conns);
  for (int i = 0; i < o.conns; ++i) {
    conns[i].fd = make_socket(o);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl");
  }

  const bool dgram = o.mode == Mode::udp;
  uint64_t requests = 0, errors = 0, timeouts = 0, seq = 0;
  std::vector<float> lat;  // µs, measured window only
  lat.reserve(1 << 20);
  bool measuring = false;
  const double t0 = now_s();
  const double t_start = t0 + o.warmup, t_end = t_start + o.duration;
  double t_measure_start = t_start;
  std::pair<long, long> cpu0{-1, -1}, cpu1{-1, -1};
  rusage ru0{}, ru1{};

  auto set_out = [&](int i, bool on) {
    Conn& c = conns[i];
    if (c.want_out == on) return;
    c.want_out = on;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  };
  auto kill = [&](int i) {
    Conn& c = conns[i];
    if (c.dead) return;
    ++errors;
    c.dead = true;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
  };
  auto try_send = [&](int i) {
    Conn& c = conns[i];
    while (c.sent < o.msg) {
      ssize_t n = send(c.fd, pattern.data() + c.offset + c.sent, o.msg - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          set_out(i, true);
          return;
        }
        if (errno == EINTR) continue;
        if (dgram && errno == ECONNREFUSED) {  // an ICMP from an earlier datagram: retry later
          return;
        }
        kill(i);
        return;
      }
      c.sent += static_cast<std::size_t>(n);
    }
    set_out(i, false);
  };
  auto start_request = [&](int i, double t) {
    Conn& c = conns[i];
    c.offset = (seq++ * 13) % kShift;
    c.sent = c.received = 0;
    c.started = t;
    try_send(i);
  };

  for (int i = 0; i < o.conns; ++i) start_request(i, now_s());

  std::vector<epoll_event> events(std::min(o.conns, 1024));
  double last_sweep = t0;
  for (;;) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    double t = now_s();
    for (int k = 0; k < n; ++k) {
      int i = static_cast<int>(events[k].data.u32);
      Conn& c = conns[i];
      if (c.dead) continue;
      if (events[k].events & EPOLLOUT) try_send(i);
      if (c.dead || !(events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
      for (;;) {
        ssize_t r = recv(c.fd, rbuf.data(), rbuf.size(), 0);
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK && !(dgram && errno == ECONNREFUSED)) kill(i);
          break;
        }
        if (r == 0 && !dgram) {  // the server closed on us
          kill(i);
          break;
        }
        std::size_t got = static_cast<std::size_t>(r);
        if (dgram ? got != o.msg : c.received + got > o.msg) {
          kill(i);  // more bytes than were sent, or a datagram of the wrong size
          break;
        }
        if (std::memcmp(rbuf.data(), pattern.data() + c.offset + c.received, got) != 0) {
          kill(i);
          break;
        }
        c.received += got;
        if (c.received == o.msg && c.sent == o.msg) {
          if (measuring) {
            ++requests;
            lat.push_back(static_cast<float>((t - c.started) * 1e6));
          }
          start_request(i, t);
          if (c.dead) break;
        }
        if (!dgram && got < rbuf.size()) break;  // drained (saves a recv returning EAGAIN)
      }
    }
    if (!measuring && t >= t_start) {
      measuring = true;
      t_measure_start = t;
      cpu0 = proc_cpu(o.server_pid);
      getrusage(RUSAGE_SELF, &ru0);
    }
    if (t >= t_end) {
      cpu1 = proc_cpu(o.server_pid);
      getrusage(RUSAGE_SELF, &ru1);
      break;
    }
    // A request unanswered for 2 s is lost (UDP) or stuck (a server bug): count it, move on.
    if (t - last_sweep > 0.25) {
      last_sweep = t;
      for (int i = 0; i < o.conns; ++i) {
        Conn& c = conns[i];
        if (c.dead || t - c.started < 2.0) continue;
        ++timeouts;
        if (dgram) {
          start_request(i, t);
        } else {
          kill(i);
        }
      }
    }
  }
  double elapsed = now_s() - t_measure_start;
  for (auto& c : conns)
    if (!c.dead) close(c.fd);

  double p50 = 0, p99 = 0, pmax = 0;
  if (!lat.empty()) {
    auto at = [&](double q) {
      auto k = static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1));
      std::nth_element(lat.begin(), lat.begin() + static_cast<long>(k), lat.end());
      return static_cast<double>(lat[k]);
    };
    p50 = at(0.50);
    p99 = at(0.99);
    pmax = *std::max_element(lat.begin(), lat.end());
  }
  auto tv = [](const timeval& v) { return static_cast<double>(v.tv_sec) + v.tv_usec / 1e6; };
  double lg_cpu = tv(ru1.ru_utime) - tv(ru0.ru_utime) + tv(ru1.ru_stime) - tv(ru0.ru_stime);
  const char* mode = o.mode == Mode::tcp ? "tcp" : o.mode == Mode::udp ? "udp" : "unix";
  long hz = sysconf(_SC_CLK_TCK);
  std::printf(
      "{\"mode\":\"%s\",\"conns\":%d,\"msg\":%zu,\"duration\":%.3f,\"requests\":%llu,"
      "\"rps\":%.1f,\"mib_s\":%.2f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
      "\"errors\":%llu,\"timeouts\":%llu,\"loadgen_cpu_pct\":%.1f",
      mode, o.conns, o.msg, elapsed, static_cast<unsigned long long>(requests),
      static_cast<double>(requests) / elapsed,
      static_cast<double>(requests) * static_cast<double>(o.msg) / elapsed / 1048576.0, p50, p99,
      pmax, static_cast<unsigned long long>(errors), static_cast<unsigned long long>(timeouts),
      100.0 * lg_cpu / elapsed);
  if (cpu0.first >= 0 && cpu1.first >= 0) {
    double ut = static_cast<double>(cpu1.first - cpu0.first) / static_cast<double>(hz);
    double st = static_cast<double>(cpu1.second - cpu0.second) / static_cast<double>(hz);
    std::printf(",\"server_user_s\":%.3f,\"server_sys_s\":%.3f", ut, st);
    if (requests) {
      std::printf(",\"server_user_us_per_req\":%.3f,\"server_sys_us_per_req\":%.3f",
                  ut * 1e6 / static_cast<double>(requests),
                  st * 1e6 / static_cast<double>(requests));
    }
  }
  std::printf("}\n");
  return errors ? 1 : 0;
}
