// The current context of each thread, for ContextVar (PEP 567).
#include "loop/context.hpp"

#include <atomic>

namespace loop {
namespace detail {

namespace {
thread_local ContextData t_base_context;  // what code outside any Context::run sees
thread_local ContextData* t_current = nullptr;
std::atomic<std::uint64_t> g_next_var_id{1};
}  // namespace

ContextData* current_context_data() {
  return t_current ? t_current : &t_base_context;
}
void set_current_context_data(ContextData* data) {
  t_current = data;
}
std::uint64_t next_context_var_id() {
  return g_next_var_id.fetch_add(1);
}

ContextScope::ContextScope(ContextData* data) : data_(data), previous_(t_current) {
  if (data_->entered) throw std::runtime_error("cannot enter context: it is already entered");
  data_->entered = true;
  t_current = data_;
}

ContextScope::~ContextScope() {
  data_->entered = false;
  t_current = previous_;
}

ContextRef capture_context() {
  // The common case has no context variables at all: share nothing, allocate nothing.
  const ContextData* cur = current_context_data();
  if (!cur->vars || cur->vars->empty()) return nullptr;
  auto copy = ContextRef::make();
  copy->vars = cur->vars;
  return copy;
}

}  // namespace detail

Context copy_context() {
  auto d = detail::ContextRef::make();
  d->vars = detail::current_context_data()->vars;
  return Context(std::move(d));
}

}  // namespace loop
