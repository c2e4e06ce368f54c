// create_subprocess_exec / create_subprocess_shell and loop::Process (asyncio.subprocess):
// communicate without deadlock, a child gone before its input, wait, signals, the pipes.
#include <signal.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "subprocess_test_support.hpp"

namespace {

loop::Coroutine<std::pair<std::string, std::string>> big_both_ways(int* rc) {
  // The child writes 1 MiB to stdout and 1 MiB to stderr before it reads a byte of its
  // stdin (1 MiB too): each is far over a pipe's 64 KiB, so only concurrent writing and
  // reading of all three pipes finishes.
  auto proc = co_await loop::create_subprocess_shell(
      "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2; wc -c");
  auto result = co_await proc.communicate(std::string(1 << 20, 'i'));
  *rc = *proc.returncode();
  co_return result;
}

// The child's stdout is asyncio's StreamReader, with all of its reading methods.
loop::Coroutine<std::string> stream_reader_api() {
  std::string cmd = "printf 'abcdef:rest'";
  auto proc = co_await loop::create_subprocess_shell(cmd);
  std::string first = co_await proc.std_out->readexactly(3);
  std::string separator = ":";
  std::string until = co_await proc.std_out->readuntil(separator);
  std::string incomplete;
  try {
    co_await proc.std_out->readexactly(100);
  } catch (const loop::IncompleteReadError& e) {
    incomplete = e.partial;
  }
  co_await proc.wait();
  co_return first + "|" + until + "|" + incomplete;
}

}  // namespace

TEST_CASE("Process.stdout is a StreamReader: readexactly, readuntil, IncompleteReadError") {
  loop::EventLoop lp;
  CHECK(lp.run_until_complete(stream_reader_api()) == "abc|def:|rest");
}

TEST_CASE("communicate: more than the pipe buffer before reading stdin does not deadlock") {
  loop::EventLoop lp;
  int rc = -1;
  auto task = lp.create_task(big_both_ways(&rc));
  auto guard = lp.call_later(60, [&] { task.cancel(); });
  auto [out, err] = lp.run_until_complete(task);
  guard.cancel();
  REQUIRE(out.size() == (1u << 20) + 8);
  CHECK(out.substr(0, 1 << 20) == std::string(1 << 20, '\0'));
  CHECK(out.substr(1 << 20) == "1048576\n");
  CHECK(err == std::string(1 << 20, '\0'));
  CHECK(rc == 0);
}

TEST_CASE("communicate with a child that exits before its stdin is written") {
  // asyncio's communicate ignores BrokenPipeError/ConnectionResetError from the stdin side;
  // SIGPIPE must not kill us.
  loop::EventLoop lp;
  SECTION("at once") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<int> {
      auto proc = co_await loop::create_subprocess_shell("exit 3");
      auto [out, err] = co_await proc.communicate(std::string(4 << 20, 'x'));
      co_return *proc.returncode() + static_cast<int>(out.size() + err.size());
    }());
    CHECK(r == 3);
  }
  SECTION("after it is known gone") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<int> {
      auto proc = co_await loop::create_subprocess_exec("true");
      int rc = co_await proc.wait();  // stdin's pipe is closed by now
      co_await proc.communicate(std::string(1 << 20, 'x'));
      co_return rc;
    }());
    CHECK(r == 0);
  }
  SECTION("write and drain by hand: the error surfaces from drain") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      auto proc = co_await loop::create_subprocess_shell("exec 0<&-; sleep 0.2");
      co_await loop::sleep(0.1);
      std::string what = "none";
      try {
        for (int i = 0; i < 64; ++i) {
          proc.std_in->write(std::string(64 * 1024, 'y'));
          co_await proc.std_in->drain();
        }
      } catch (const std::system_error& e) {
        what = e.code().value() == ECONNRESET || e.code().value() == EPIPE ? std::string("reset")
                                                                           : std::string(e.what());
      }
      co_await proc.wait();
      co_return what;
    }());
    CHECK(r == "reset");
  }
  sigset_t pending;
  sigpending(&pending);
  CHECK(sigismember(&pending, SIGPIPE) == 0);
}

TEST_CASE("Process: pid, wait, returncode, readline, signals") {
  loop::EventLoop lp;
  SECTION("wait and returncode") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      auto proc =
          co_await loop::create_subprocess_exec("sh", sptest::args("-c", "sleep 0.1; exit 4"));
      std::string s = proc.pid() > 0 ? std::string("pid ") : std::string("nopid ");
      s += proc.returncode() ? std::string("early ") : std::string("running ");
      int rc = co_await proc.wait();
      s += std::to_string(rc) + " " + std::to_string(*proc.returncode());
      co_return s;
    }());
    CHECK(r == "pid running 4 4");
  }
  SECTION("readline and read") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      auto proc = co_await loop::create_subprocess_shell("printf 'one\\ntwo\\nrest'");
      std::string a = co_await proc.std_out->readline();
      std::string b = co_await proc.std_out->readline();
      std::string c = co_await proc.std_out->read();
      std::string d = co_await proc.std_out->readline();
      co_await proc.wait();
      co_return a + "|" + b + "|" + c + "|" + d + "|" +
          (proc.std_out->at_eof() ? std::string("eof") : std::string());
    }());
    CHECK(r == "one\n|two\n|rest||eof");
  }
  SECTION("stdin piped through cat") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      auto proc = co_await loop::create_subprocess_exec("cat");
      auto [out, err] = co_await proc.communicate(std::string("hello cat"));
      co_return out + "|" + err + "|" + std::to_string(*proc.returncode());
    }());
    CHECK(r == "hello cat||0");
  }
  SECTION("kill and terminate") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      auto a = co_await loop::create_subprocess_exec("sleep", sptest::args("30"));
      auto b = co_await loop::create_subprocess_exec("sleep", sptest::args("30"));
      a.kill();
      b.terminate();
      int ra = co_await a.wait();
      int rb = co_await b.wait();
      co_return std::to_string(ra) + " " + std::to_string(rb);
    }());
    CHECK(r == std::to_string(-SIGKILL) + " " + std::to_string(-SIGTERM));
  }
  SECTION("not piped: no stream, communicate gives empty strings") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      loop::SubprocessOptions o;
      o.std_in = loop::DEVNULL;
      o.std_out = loop::DEVNULL;
      o.std_err = loop::DEVNULL;
      auto proc = co_await loop::create_subprocess_shell("echo hidden; exit 2", o);
      bool none = !proc.std_in && !proc.std_out && !proc.std_err;
      auto [out, err] = co_await proc.communicate();
      co_return std::string(none ? "none " : "some ") + out + err +
          std::to_string(*proc.returncode());
    }());
    CHECK(r == "none 2");
  }
  SECTION("stderr=STDOUT") {
    auto r = lp.run_until_complete([]() -> loop::Coroutine<std::string> {
      loop::SubprocessOptions o;
      o.std_err = loop::STDOUT;
      auto proc = co_await loop::create_subprocess_shell("echo a; echo b >&2", o);
      auto [out, err] = co_await proc.communicate();
      co_return out + "|" + err + "|" + (proc.std_err ? std::string("err") : std::string("noerr"));
    }());
    CHECK(r == "a\nb\n||noerr");
  }
  SECTION("a missing program") {
    CHECK_THROWS_AS(lp.run_until_complete(loop::create_subprocess_exec("no-such-program-xyz")),
                    std::system_error);
  }
  CHECK(sptest::zombie_children().empty());
}
