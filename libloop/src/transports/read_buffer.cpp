// The per-thread read buffer (see read_buffer.hpp).
#include "transports/read_buffer.hpp"

#include <memory>

namespace loop::detail {

char* thread_read_buffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kReadBufferSize]);
  return buffer.get();
}

}  // namespace loop::detail
