// EventLoop::sock_sendfile: asyncio's loop.sock_sendfile on a raw socket. sendfile(2) first
// (zero copy); if the kernel cannot, the fallback reads the file in the default executor and
// sends with sock_sendall. In both cases the file position ends after the last byte sent.
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "io/fd_wait.hpp"
#include "io/io_buffer.hpp"
#include "io/no_sigpipe.hpp"

namespace loop {

namespace {

// asyncio's SENDFILE_FALLBACK_READBUFFER_SIZE.
constexpr std::size_t kFallbackReadBufferSize = 256 * 1024;

void check_sendfile_params(int sock, std::optional<std::size_t> count) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    detail::throw_errno(errno, "sock_sendfile");
  if (type != SOCK_STREAM)
    throw std::invalid_argument("only SOCK_STREAM type sockets are supported");
  if (count && *count == 0) throw std::invalid_argument("count must be a positive integer (got 0)");
}

// asyncio's _sock_sendfile_update_filepos: only moves the position if something was sent.
void update_filepos(int file_fd, std::size_t offset, std::size_t total_sent) {
  if (total_sent > 0) ::lseek(file_fd, static_cast<off_t>(offset + total_sent), SEEK_SET);
}

// asyncio's unix _sock_sendfile_native: one sendfile(2) now, then one per writable event, made
// in the writer's callback (_sock_sendfile_native_impl), until the count or the end of the file.
Coroutine<std::size_t> sendfile_native(EventLoop& loop, int sock, int file_fd, std::size_t offset,
                                       std::optional<std::size_t> count) {
  struct stat st;
  if (::fstat(file_fd, &st) != 0) throw SendfileNotAvailableError("not a regular file");
  // With a count, sendfile(2) judges the file, as in asyncio: a pipe or socket is refused by
  // the kernel ("os.sendfile call failed" below), a file it can read is sent natively. Without
  // one, a non-regular file's size means nothing (asyncio would send 0 bytes): the fallback
  // reads it to EOF instead.
  if (!S_ISREG(st.st_mode) && !count) throw SendfileNotAvailableError("not a regular file");
  std::size_t fsize = static_cast<std::size_t>(st.st_size);
  std::size_t blocksize = count ? *count : fsize;
  if (blocksize == 0) co_return 0;  // an empty file
  std::size_t total_sent = 0;
  off_t pos = static_cast<off_t>(offset);
  // The total once done; nothing while there is more to send (or the socket would block). It
  // runs only while this frame waits for it: the locals it refers to are alive.
  auto attempt = [&]() -> std::optional<std::size_t> {
    if (count) {
      blocksize = *count - total_sent;
      if (blocksize == 0) {
        update_filepos(file_fd, offset, total_sent);
        return total_sent;
      }
    }
    ssize_t sent = detail::call_without_sigpipe(
        blocksize, [&] { return ::sendfile(sock, file_fd, &pos, blocksize); });
    if (sent > 0) {
      total_sent += static_cast<std::size_t>(sent);
      return std::nullopt;
    }
    if (sent == 0) {  // EOF
      update_filepos(file_fd, offset, total_sent);
      return total_sent;
    }
    int err = errno;
    if (detail::would_block(err)) return std::nullopt;
    update_filepos(file_fd, offset, total_sent);
    // Nothing sent yet: the kernel cannot sendfile this pair (asyncio then falls back).
    if (total_sent == 0) throw SendfileNotAvailableError("os.sendfile call failed");
    if (err == ENOTCONN)
      detail::throw_errno(err, "socket is not connected");  // the peer went away midway
    detail::throw_errno(err, "sendfile");
  };
  if (auto done = attempt()) co_return *done;
  try {
    co_return co_await detail::wait_fd_call<std::size_t>(loop, sock, 1,
                                                         [&attempt] { return attempt(); });
  } catch (...) {
    update_filepos(file_fd, offset, total_sent);  // cancelled: still leave the position right
    throw;
  }
}

// One read for the fallback, run in the executor: pread where the file can seek, read otherwise.
// The buffer is shared: a cancelled task may be gone before the worker finishes reading.
std::size_t read_chunk(int file_fd, std::shared_ptr<detail::IoBuffer> buf, std::size_t size,
                       bool seekable, off_t at) {
  for (;;) {
    ssize_t n =
        seekable ? ::pread(file_fd, buf->data(), size, at) : ::read(file_fd, buf->data(), size);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) detail::throw_errno(errno, "sock_sendfile: reading the file");
  }
}

// asyncio's _sock_sendfile_fallback.
Coroutine<std::size_t> sendfile_fallback(EventLoop& loop, int sock, int file_fd, std::size_t offset,
                                         std::optional<std::size_t> count) {
  bool seekable = ::lseek(file_fd, 0, SEEK_CUR) >= 0;
  std::size_t blocksize =
      count ? std::min(*count, kFallbackReadBufferSize) : kFallbackReadBufferSize;
  auto buf = std::make_shared<detail::IoBuffer>(blocksize);  // page-aligned: io/io_buffer.hpp
  std::size_t total_sent = 0;
  std::exception_ptr error;
  try {
    for (;;) {
      if (count) {
        blocksize = std::min(*count - total_sent, blocksize);
        if (blocksize == 0) break;
      }
      off_t at = static_cast<off_t>(offset + total_sent);
      std::size_t got = co_await loop.run_in_executor(nullptr, &read_chunk, file_fd, buf, blocksize,
                                                      seekable, at);
      if (got == 0) break;  // EOF
      co_await loop.sock_sendall(sock, std::string_view(buf->data(), got));
      total_sent += got;
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (seekable) update_filepos(file_fd, offset, total_sent);
  if (error) std::rethrow_exception(error);
  co_return total_sent;
}

}  // namespace

Coroutine<std::size_t> EventLoop::sock_sendfile(int sock, int file_fd, std::size_t offset,
                                                std::optional<std::size_t> count, bool fallback) {
  check_closed();
  detail::check_nonblocking(sock);
  check_sendfile_params(sock, count);
  bool native_unavailable = false;
  std::size_t sent = 0;
  try {
    sent = co_await sendfile_native(*this, sock, file_fd, offset, count);
  } catch (const SendfileNotAvailableError&) {
    if (!fallback) throw;
    native_unavailable = true;
  }
  if (!native_unavailable) co_return sent;
  co_return co_await sendfile_fallback(*this, sock, file_fd, offset, count);
}

}  // namespace loop
