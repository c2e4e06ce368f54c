// spawn_child: posix_spawn (glibc runs it with CLONE_VFORK, so an exec failure comes back as
// its return value: the missing program is an error here, in the parent, as Python's Popen
// raises FileNotFoundError).
#include "subprocess/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace loop::detail {

namespace {

// An fd this function owns until it hands it over (release) or returns.
struct OwnedFd {
  int fd = -1;
  OwnedFd() = default;
  explicit OwnedFd(int f) : fd(f) {}
  OwnedFd(OwnedFd&& o) noexcept : fd(o.release()) {}
  OwnedFd& operator=(OwnedFd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~OwnedFd() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// A close-on-exec copy of `fd` numbered 3 or more, so that the child's dup2 onto 0, 1, 2
// can never overwrite a source that is still to be used.
OwnedFd high_copy(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) throw_errno(errno, "fcntl(F_DUPFD_CLOEXEC)");
  return OwnedFd(copy);
}

// Python's os.get_exec_path(env): the PATH of `env` if given (os.defpath when it has none),
// else this process's.
std::string exec_path(const SubprocessOptions& options) {
  static const char* const kDefPath = "/bin:/usr/bin";
  if (options.env) {
    auto it = options.env->find("PATH");
    return it != options.env->end() ? it->second : kDefPath;
  }
  const char* p = std::getenv("PATH");
  return p ? p : kDefPath;
}

// execvp's search, done before spawning so that the PATH is the child's: the first regular
// executable file wins; a match without execute permission gives EACCES, none ENOENT.
std::string find_program(const std::string& program, const SubprocessOptions& options) {
  if (program.find('/') != std::string::npos) return program;
  std::string path = exec_path(options);
  bool saw_eacces = false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      saw_eacces = true;
    }
    start = end + 1;
  }
  throw_errno(saw_eacces ? EACCES : ENOENT, "cannot run '" + program + "'");
}

struct FileActions {
  posix_spawn_file_actions_t fa;
  FileActions() {
    if (int err = posix_spawn_file_actions_init(&fa))
      throw_errno(err, "posix_spawn_file_actions_init");
  }
  ~FileActions() { posix_spawn_file_actions_destroy(&fa); }
  void check(int err) {
    if (err) throw_errno(err, "posix_spawn_file_actions");
  }
};

struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() {
    if (int err = posix_spawnattr_init(&attr)) throw_errno(err, "posix_spawnattr_init");
  }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};

}  // namespace

void check_subprocess_options(const SubprocessOptions& o) {
  if (o.std_in.kind == Stdio::Kind::to_stdout)
    throw std::invalid_argument("STDOUT can only be used for stderr");
  if (o.std_out.kind == Stdio::Kind::to_stdout)
    throw std::invalid_argument("STDOUT can only be used for stderr");
  for (const Stdio* s : {&o.std_in, &o.std_out, &o.std_err})
    if (s->kind == Stdio::Kind::fd && s->fd < 0)
      throw std::invalid_argument("a negative file descriptor for a child's stream");
  if (o.env)
    for (const auto& [k, v] : *o.env)
      if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
          v.find('\0') != std::string::npos)
        throw std::invalid_argument("illegal environment variable name or value: '" + k + "'");
}

SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& options) {
  if (argv.empty() || argv[0].empty()) throw std::invalid_argument("no program to run");
  for (const auto& a : argv)
    if (a.find('\0') != std::string::npos) throw std::invalid_argument("embedded null byte");
  check_subprocess_options(options);
  std::string path = find_program(argv[0], options);

  // The child's side of each stream (sources, all >= 3) and the parent's pipe ends.
  std::array<OwnedFd, 3> source;
  std::array<OwnedFd, 3> parent;
  OwnedFd devnull;
  const Stdio* specs[3] = {&options.std_in, &options.std_out, &options.std_err};
  for (int i = 0; i < 3; ++i) {
    switch (specs[i]->kind) {
      case Stdio::Kind::pipe: {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
        OwnedFd r(p[0]), w(p[1]);
        source[i] = high_copy(i == 0 ? r.fd : w.fd);
        parent[i] = i == 0 ? std::move(w) : std::move(r);
        break;
      }
      case Stdio::Kind::devnull:
        if (devnull.fd < 0) {
          devnull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
          if (devnull.fd < 0) throw_errno(errno, "open /dev/null");
        }
        source[i] = high_copy(devnull.fd);
        break;
      case Stdio::Kind::fd:
        source[i] = high_copy(specs[i]->fd);
        break;
      case Stdio::Kind::inherit:
      case Stdio::Kind::to_stdout:
        break;
    }
  }

  FileActions fa;
  for (int i = 0; i < 3; ++i)
    if (source[i].fd >= 0) fa.check(posix_spawn_file_actions_adddup2(&fa.fa, source[i].fd, i));
  if (options.std_err.kind == Stdio::Kind::to_stdout)
    fa.check(posix_spawn_file_actions_adddup2(&fa.fa, 1, 2));
  // close_fds=True: nothing of ours leaks into the child, even fds made without CLOEXEC.
  fa.check(posix_spawn_file_actions_addclosefrom_np(&fa.fa, 3));
  if (options.cwd) fa.check(posix_spawn_file_actions_addchdir_np(&fa.fa, options.cwd->c_str()));

  SpawnAttr attr;
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  // Python's restore_signals=True: an ignored SIGPIPE (or SIGXFSZ) is not the child's business.
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  posix_spawnattr_setsigmask(&attr.attr, &none);
  posix_spawnattr_setsigdefault(&attr.attr, &defaults);
  posix_spawnattr_setflags(&attr.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<std::string> env_storage;
  std::vector<char*> cenv;
  char** envp = environ;
  if (options.env) {
    for (const auto& [k, v] : *options.env) env_storage.push_back(k + "=" + v);
    for (auto& e : env_storage) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    envp = cenv.data();
  }

  pid_t pid = -1;
  int err = posix_spawn(&pid, path.c_str(), &fa.fa, &attr.attr, cargv.data(), envp);
  if (err != 0) {
    if (options.cwd) {
      struct stat st {};
      if (::stat(options.cwd->c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
          ::access(options.cwd->c_str(), X_OK) != 0)
        throw_errno(err, "cannot change to the directory '" + *options.cwd + "'");
    }
    throw_errno(err, "cannot run '" + argv[0] + "'");
  }
  SpawnedChild child;
  child.pid = pid;
  child.stdin_fd = parent[0].release();
  child.stdout_fd = parent[1].release();
  child.stderr_fd = parent[2].release();
  return child;
}

}  // namespace loop::detail
