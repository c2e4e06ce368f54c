// loop::SSLProtocolTransport: what the application sees of a TLS connection (asyncio's
// _SSLProtocolTransport). It forwards to its SSLProtocol and to the transport below it.
#include <stdexcept>

#include "loop/sslproto.hpp"

namespace loop {

std::shared_ptr<SSLProtocol> SSLProtocolTransport::protocol_or_throw() const {
  auto p = ssl_protocol_.lock();
  if (!p) throw std::runtime_error("SSL transport is gone");
  return p;
}

std::any SSLProtocolTransport::get_extra_info(std::string_view name, std::any default_value) const {
  auto p = ssl_protocol_.lock();
  if (!p) return default_value;
  return p->get_extra_info(name, std::move(default_value));
}

void SSLProtocolTransport::close() {
  closed_ = true;
  if (auto p = ssl_protocol_.lock()) p->start_shutdown();
}

void SSLProtocolTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto app = std::dynamic_pointer_cast<Protocol>(protocol);
  if (!app) throw std::invalid_argument("an SSL transport needs a stream Protocol");
  protocol_or_throw()->set_app_protocol(std::move(app));
}

std::shared_ptr<BaseProtocol> SSLProtocolTransport::get_protocol() const {
  auto p = ssl_protocol_.lock();
  return p ? p->app_protocol() : nullptr;
}

bool SSLProtocolTransport::is_reading() const {
  auto p = protocol_or_throw();
  if (!p->transport_) throw std::runtime_error("SSL transport has not been initialized yet");
  return p->transport_->is_reading();
}

void SSLProtocolTransport::pause_reading() {
  auto p = protocol_or_throw();
  if (p->transport_) p->transport_->pause_reading();
}

void SSLProtocolTransport::resume_reading() {
  auto p = protocol_or_throw();
  if (p->transport_) p->transport_->resume_reading();
}

void SSLProtocolTransport::write(std::string_view data) {
  if (data.empty()) return;
  // After close() our close_notify is (or will be) out: nothing may follow it. asyncio
  // drops such writes too.
  if (closed_) return;
  auto p = protocol_or_throw();
  if (p->eof_written_) throw std::runtime_error("Cannot call write() after write_eof()");
  p->write_appdata(data);
}

void SSLProtocolTransport::write_eof() {
  if (closed_) return;
  protocol_or_throw()->start_write_eof();
}

void SSLProtocolTransport::abort() {
  if (auto p = ssl_protocol_.lock()) p->do_abort();
  closed_ = true;
}

std::size_t SSLProtocolTransport::get_write_buffer_size() const {
  auto p = ssl_protocol_.lock();
  if (!p) return 0;
  std::size_t below = p->transport_ ? p->transport_->get_write_buffer_size() : 0;
  return below + p->write_buffer_size_;
}

void SSLProtocolTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                                   std::optional<std::size_t> low) {
  auto p = protocol_or_throw();
  if (!p->transport_) throw std::runtime_error("SSL transport has not been initialized yet");
  p->transport_->set_write_buffer_limits(high, low);
}

std::pair<std::size_t, std::size_t> SSLProtocolTransport::get_write_buffer_limits() const {
  auto p = protocol_or_throw();
  if (!p->transport_) throw std::runtime_error("SSL transport has not been initialized yet");
  return p->transport_->get_write_buffer_limits();
}

}  // namespace loop
