// Differential scenarios: one small program written twice, on libloop here and on asyncio in
// the .py file of the same name, each printing a line per event. compare.py runs both and
// requires the same lines in the same order: the callback order is checked against the real
// asyncio of the machine, not against what a test's author believed it to be.
//
//   SCENARIO(call_soon_is_fifo) {
//     loop::EventLoop lp;
//     lp.call_soon([] { diff::say("first"); });
//     ...
//   }
//
// `program --list` prints the scenario names, `program NAME` runs one. Events of two peers
// that the kernel may interleave either way are logged per side and printed side by side at
// the end; a coroutine lambda must outlive its task (name it).
#pragma once

#include <cstdio>
#include <exception>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

namespace diff {

using Body = void (*)();

inline std::map<std::string, Body>& registry() {
  static std::map<std::string, Body> scenarios;
  return scenarios;
}

struct Register {
  Register(const char* name, Body body) { registry().emplace(name, body); }
};

// Python's spelling of a value as print() writes it, for the few types the scenarios print.
inline void put(std::ostream& out, bool b) {
  out << (b ? "True" : "False");
}
inline void put(std::ostream& out, std::nullptr_t) {
  out << "None";
}
template <class T>
void put(std::ostream& out, const T& v) {
  out << v;
}

/// One line: the arguments separated by spaces, as Python's print(*args). A call's arguments
/// are evaluated in no set order (GCC goes right to left, Python left to right): keep calls
/// with side effects out of them, as in `bool c = t.cancel(); say(c, t.done());`.
template <class... Args>
void say(const Args&... args) {
  std::ostringstream line;
  bool first = true;
  ((line << (first ? "" : " "), put(line, args), first = false), ...);
  line << '\n';
  std::fputs(line.str().c_str(), stdout);
  std::fflush(stdout);  // a crash keeps the lines before it, for the diff
}

/// Python's repr() of a bytes object: b'ab\n', b"it's".
std::string B(std::string_view s);

/// The name Python gives the exception class, for the asyncio exceptions the scenarios meet.
std::string exception_name(const std::exception& e);

}  // namespace diff

#define SCENARIO(name)                                                  \
  static void scenario_##name();                                        \
  static const diff::Register register_##name(#name, &scenario_##name); \
  static void scenario_##name()
