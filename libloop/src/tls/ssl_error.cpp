// SSLError from OpenSSL's (thread-local) error queue.
#include <openssl/err.h>

#include "loop/ssl.hpp"

namespace loop::detail {

SSLError ssl_error_from_queue(const std::string& what) {
  std::string message = what;
  std::string reason, library;
  unsigned long first = 0;
  char buf[256];
  // Every queued error, oldest first: the first is the cause, the rest its context.
  while (unsigned long code = ERR_get_error()) {
    if (!first) {
      first = code;
      if (const char* r = ERR_reason_error_string(code)) reason = r;
      if (const char* l = ERR_lib_error_string(code)) library = l;
    }
    ERR_error_string_n(code, buf, sizeof buf);
    message += first == code ? ": " : "; ";
    message += buf;
  }
  return SSLError(message, reason, library, first);
}

}  // namespace loop::detail
