// The exceptions of asyncio, as C++ types. asyncio's ValueError is std::invalid_argument and its
// RuntimeError is std::runtime_error; these are the ones asyncio names itself.
#pragma once

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

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

/// create_connection could connect to none of the addresses getaddrinfo gave, for different
/// reasons: asyncio's OSError("Multiple exceptions: ..."). A std::system_error as each single
/// failure is, so that one catch handles both; code() is the first address's error, and
/// `errors` holds every address's, in the order they were tried.
class MultipleConnectErrors : public std::system_error {
 public:
  MultipleConnectErrors(std::error_code first, std::string message,
                        std::vector<std::exception_ptr> errors)
      : std::system_error(first, message),
        errors(std::move(errors)),
        message_(std::move(message)) {}
  /// asyncio's text alone ("Multiple exceptions: ..."), without code()'s message appended.
  const char* what() const noexcept override { return message_.c_str(); }
  std::vector<std::exception_ptr> errors;

 private:
  std::string message_;
};

/// A separator was found but the chunk exceeded the limit (asyncio.LimitOverrunError).
class LimitOverrunError : public std::runtime_error {
 public:
  LimitOverrunError(const std::string& msg, std::size_t consumed)
      : std::runtime_error(msg), consumed(consumed) {}
  std::size_t consumed;
};

}  // namespace loop
