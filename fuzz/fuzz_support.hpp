// Shared by the fuzz targets: running a loop for a bounded number of iterations, and cutting a
// byte stream into chunks whose sizes come from the fuzzer's input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <loop/loop.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace loop::fuzz {

/// Runs `lp` until pred() holds, checked once per iteration, at most `max_iterations`
/// iterations; returns pred(). Nothing here waits on a clock, so a run is reproducible.
inline bool run_until(EventLoop& lp, const std::function<bool()>& pred,
                      int max_iterations = 100000) {
  int n = 0;
  std::function<void()> check = [&] {
    if (pred() || ++n >= max_iterations)
      lp.stop();
    else
      lp.call_soon(check);
  };
  lp.call_soon(check);
  lp.run_forever();
  return pred();
}

/// Chunk sizes 1-256 drawn in turn from `sizes` (cycled; empty means one chunk).
class Chunker {
 public:
  explicit Chunker(std::string sizes) : sizes_(std::move(sizes)) {}
  std::vector<std::string_view> split(std::string_view data) {
    std::vector<std::string_view> out;
    if (sizes_.empty()) {
      if (!data.empty()) out.push_back(data);
      return out;
    }
    while (!data.empty()) {
      std::size_t n = 1 + static_cast<unsigned char>(sizes_[next_++ % sizes_.size()]);
      n = std::min(n, data.size());
      out.push_back(data.substr(0, n));
      data.remove_prefix(n);
    }
    return out;
  }

 private:
  std::string sizes_;
  std::size_t next_ = 0;
};

/// Splits the fuzzer's input at the first "\n--\n" into (control, payload); no separator:
/// empty control.
inline std::pair<std::string, std::string> split_input(const std::uint8_t* data, std::size_t size) {
  std::string all(reinterpret_cast<const char*>(data), size);
  auto sep = all.find("\n--\n");
  if (sep == std::string::npos) return {"", all};
  return {all.substr(0, sep), all.substr(sep + 4)};
}

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

}  // namespace loop::fuzz
