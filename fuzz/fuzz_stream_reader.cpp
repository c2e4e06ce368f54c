// StreamReader (what StreamReaderProtocol.data_received feeds) given arbitrary bytes cut into
// arbitrary chunks, read by a task doing readline / readuntil / readexactly / read in an order
// the input chooses. Input: <control>\n--\n<bytes>; control bytes give both the chunk sizes
// and the reads. Check: every read returns what it returns when the bytes come in one piece
// (results, IncompleteReadError's partial, EOF), and everything fed is read exactly once.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.hpp"

namespace {

// One read's outcome, as text: "L<line>", "U<...>", "X<...>", "I<partial>", "R<rest>".
// (read(n) is left out: what it returns depends on the chunks, by design.)
loop::Coroutine<void> reader_task(std::shared_ptr<loop::StreamReader> r, std::string ops,
                                  std::vector<std::string>* out) {
  if (ops.empty()) ops = "\x01";
  for (std::size_t i = 0; out->size() < 100000; ++i) {
    auto c = static_cast<unsigned char>(ops[i % ops.size()]);
    std::string got;
    try {
      switch (c % 3) {
        case 0:
          got = "L" + co_await r->readline();
          break;
        case 1:
          got = "U" + co_await r->readuntil("\r\n");
          break;
        case 2:
        default:
          got = "X" + co_await r->readexactly(1 + c / 3 % 64);
          break;
      }
    } catch (const loop::IncompleteReadError& e) {
      got = "I" + e.partial;
    }
    out->push_back(got);
    if (r->at_eof()) co_return;
  }
  out->push_back("R" + co_await r->read());
}

std::vector<std::string> run(const std::string& ops, const std::string& payload,
                             std::string sizes) {
  loop::EventLoop lp;
  auto reader = std::make_shared<loop::StreamReader>(lp);
  std::vector<std::string> out;
  auto task = lp.create_task(reader_task(reader, ops, &out));
  loop::fuzz::Chunker chunker(std::move(sizes));
  for (auto chunk : chunker.split(payload)) {
    lp.call_soon([reader, chunk] { reader->feed_data(chunk); });
    // A reader's wake-up runs between chunks, as when each is a separate data_received.
    lp.call_soon([] {});
  }
  lp.call_soon([reader] { reader->feed_eof(); });
  FUZZ_CHECK(loop::fuzz::run_until(lp, [&] { return task.done(); }));
  task.result();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto [control, payload] = loop::fuzz::split_input(data, size);
  if (payload.size() > 16384) return 0;  // under the reader's limit: no overrun cases
  auto whole = run(control, payload, "");
  auto chunked = run(control, payload, control);
  FUZZ_CHECK(whole == chunked);
  std::string all;
  for (auto& s : whole) all += s.substr(1);
  FUZZ_CHECK(all == payload);
  return 0;
}
