// detail::subprocess_exec: asyncio's _make_subprocess_transport (unix_events.py).
#include "loop/loop.hpp"
#include "subprocess/subprocess_transport.hpp"

namespace loop::detail {

Coroutine<std::shared_ptr<SubprocessTransport>> subprocess_exec(
    EventLoop& lp, std::function<std::shared_ptr<SubprocessProtocol>()> protocol_factory,
    std::vector<std::string> argv, std::string display_name, SubprocessOptions options) {
  lp.check_closed();
  if (lp.get_debug()) lp.check_thread();
  check_subprocess_options(options);  // before the protocol is made, as asyncio's ValueErrors
  auto protocol = protocol_factory();
  if (!protocol) throw std::invalid_argument("protocol_factory returned no protocol");
  // Spawning throws here (a missing program: std::system_error ENOENT naming it).
  auto transport = std::make_shared<SubprocessTransportImpl>(lp, protocol, argv,
                                                             std::move(display_name), options);
  Future<void> waiter = lp.create_future<void>();
  transport->start(waiter);
  std::exception_ptr failed;
  try {
    co_await waiter;
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    transport->close();
    co_await transport->wait();
    std::rethrow_exception(failed);
  }
  co_return transport;
}

Future<int> subprocess_wait(SubprocessTransport& transport) {
  auto* impl = dynamic_cast<SubprocessTransportImpl*>(&transport);
  if (!impl) throw std::invalid_argument("not a transport made by subprocess_exec");
  return impl->wait();
}

}  // namespace loop::detail
