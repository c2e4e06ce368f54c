// The exceptions of asyncio, as C++ types. asyncio's ValueError is std::invalid_argument and its
// RuntimeError is std::runtime_error; these are the ones asyncio names itself.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

namespace loop {

/// The operation was cancelled (asyncio.CancelledError).
class CancelledError : public std::runtime_error {
 public:
  explicit CancelledError(const std::string& msg = "") : std::runtime_error(msg) {}
};

/// Invalid internal state of a Future or Task, e.g. a result set twice (asyncio.InvalidStateError).
class InvalidStateError : public std::logic_error {
 public:
  explicit InvalidStateError(const std::string& msg) : std::logic_error(msg) {}
};

/// The operation exceeded its deadline (asyncio.TimeoutError).
class TimeoutError : public std::runtime_error {
 public:
  explicit TimeoutError(const std::string& msg = "timed out") : std::runtime_error(msg) {}
};

/// sendfile is not available for this socket or file type (asyncio.SendfileNotAvailableError).
class SendfileNotAvailableError : public std::runtime_error {
 public:
  explicit SendfileNotAvailableError(const std::string& msg) : std::runtime_error(msg) {}
};

/// A read ended at EOF before the expected number of bytes (asyncio.IncompleteReadError).
/// `expected` is empty for readuntil(), which expects no number (Python's None).
class IncompleteReadError : public std::runtime_error {
 public:
  IncompleteReadError(std::string partial_data, std::optional<std::size_t> expected)
      : std::runtime_error(std::to_string(partial_data.size()) + " bytes read on a total of " +
                           (expected ? std::to_string(*expected) : std::string("undefined")) +
                           " expected bytes"),
        partial(std::move(partial_data)),
        expected(expected) {}
  std::string partial;
  std::optional<std::size_t> expected;
};

/// A separator was found but the chunk exceeded the limit (asyncio.LimitOverrunError).
class LimitOverrunError : public std::runtime_error {
 public:
  LimitOverrunError(const std::string& msg, std::size_t consumed)
      : std::runtime_error(msg), consumed(consumed) {}
  std::size_t consumed;
};

}  // namespace loop
