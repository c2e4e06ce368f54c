// Handle/TimerHandle, and the readable names callbacks carry into reports and traces.
#include "loop/handle.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "loop/event_loop.hpp"

namespace loop {

// A pending callback's bytes are most of what a burst of them costs: the base stays at 32, so
// that a callback capturing one pointer takes a 40-byte block (docs/performance.md).
static_assert(sizeof(void*) != 8 || sizeof(detail::HandleImpl) == 32);
static_assert(sizeof(void*) != 8 || sizeof(detail::TimerHandleImpl) == 48);

void Handle::cancel() {
  if (!ref_ || ref_->cancelled) return;
  bool in_heap = false;
  if (ref_->kind == detail::HandleKind::timer) {
    auto& timer = static_cast<detail::TimerHandleImpl&>(*ref_);
    // Only a scheduled timer has a loop to tell (as asyncio's _timer_handle_cancelled counts
    // only those): one that ran, or whose loop closed or was destroyed, may outlive the loop.
    in_heap = timer.scheduled && timer.loop;
    if (in_heap) timer.loop->timer_handle_cancelled(timer);
  }
  ref_->cancelled = true;
  // A timer still in the heap is not running, so its callable can go now; any other handle
  // may be the one running (a callback cancelling itself) and lets go of it when dropped.
  // The destructors run may destroy this Handle (one a capture held): only `keep` is used.
  if (in_heap) {
    detail::HandleRef keep = ref_;
    keep->release_callback();
  }
}

std::string Handle::repr() const {
  if (!ref_) return "<Handle none>";
  std::string r = ref_->kind == detail::HandleKind::timer ? "<TimerHandle " : "<Handle ";
  if (ref_->cancelled) r += "cancelled ";
  if (ref_->kind == detail::HandleKind::timer) {
    char when[64];
    std::snprintf(when, sizeof when, "when=%.6f ",
                  static_cast<const detail::TimerHandleImpl&>(*ref_).when);
    r += when;
  }
  r += ref_->callback_name() + "()";
  if (const detail::Origin* origin = ref_->origin()) r += " created at " + origin->describe();
  return r + ">";
}

Context Handle::get_context() const {
  if (ref_ && ref_->context) return Context(ref_->context);
  return Context();
}

namespace detail {

const char* kind_name(HandleKind kind) {
  switch (kind) {
    case HandleKind::soon:
      return "soon";
    case HandleKind::timer:
      return "timer";
    case HandleKind::threadsafe:
      return "threadsafe";
    case HandleKind::io:
      return "io";
    case HandleKind::signal:
      return "signal";
    case HandleKind::task:
      return "task";
    case HandleKind::future:
      return "future";
  }
  return "soon";
}

std::string demangle(const char* mangled) {
  // Demangling is slow and names repeat: keep each one (per thread, no locking).
  thread_local std::unordered_map<const char*, std::string> cache;
  auto it = cache.find(mangled);
  if (it != cache.end()) return it->second;
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = (status == 0 && out) ? out : mangled;
  std::free(out);
  // "main::{lambda()#1}" reads better than the full closure type with its signature.
  return cache.emplace(mangled, std::move(name)).first->second;
}

namespace {
std::string symbol_at(const void* address) {
  Dl_info info{};
  if (dladdr(address, &info) && info.dli_sname) {
    int status = 0;
    char* out = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
    std::string name = (status == 0 && out) ? out : info.dli_sname;
    std::free(out);
    return name;
  }
  return {};
}
}  // namespace

std::string function_name(const void* fn_address, const std::type_info& type) {
  std::string name = symbol_at(fn_address);
  if (!name.empty()) {
    // Drop the parameter list: "print_hello(loop::EventLoop&)" -> "print_hello".
    auto paren = name.find('(');
    if (paren != std::string::npos && paren > 0) name.resize(paren);
    return name;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", fn_address);
  return demangle(type.name()) + " at " + buf;
}

std::unique_ptr<Origin> capture_origin() {
  auto o = std::make_unique<Origin>();
  o->frames.resize(16);
  int n = backtrace(o->frames.data(), static_cast<int>(o->frames.size()));
  o->frames.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return o;
}

namespace {
// The debug-mode origins of live handles. Leaked on purpose: handles may be destroyed by
// other static destructors at exit.
struct OriginTable {
  std::mutex mutex;
  std::unordered_map<const HandleImpl*, std::unique_ptr<Origin>> map;
};
OriginTable& origin_table() {
  static auto* table = new OriginTable;
  return *table;
}
}  // namespace

const Origin* HandleImpl::origin() const {
  if (!has_origin_) return nullptr;
  OriginTable& t = origin_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  auto it = t.map.find(this);
  return it == t.map.end() ? nullptr : it->second.get();
}

void HandleImpl::set_origin(std::unique_ptr<Origin> origin) {
  OriginTable& t = origin_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  if (origin) {
    t.map[this] = std::move(origin);
    has_origin_ = true;
  } else if (has_origin_) {
    t.map.erase(this);
    has_origin_ = false;
  }
}

void HandleImpl::forget_origin() noexcept {
  OriginTable& t = origin_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.map.erase(this);
}

std::string Origin::describe() const {
  // The first frames are libloop's own (call_soon and what it called): name the caller.
  std::string out;
  int shown = 0;
  for (void* f : frames) {
    std::string name = symbol_at(f);
    if (name.empty() || name.rfind("loop::", 0) == 0 ||
        name.find("capture_origin") != std::string::npos)
      continue;
    auto paren = name.find('(');
    if (paren != std::string::npos && paren > 0) name.resize(paren);
    if (!out.empty()) out += " <- ";
    out += name;
    if (++shown == 3) break;
  }
  return out.empty() ? "<unknown>" : out;
}

}  // namespace detail
}  // namespace loop
