// PEP 567 context variables: the C++ counterpart of Python's contextvars module.
//
// Every callback runs in a Context: by default a copy of the context current when it was
// scheduled (call_soon captures it, as asyncio's Handle does); a Task copies the context once at
// creation and runs every step in that same copy, so a ContextVar set in one step is seen in the
// next. ContextVar::set changes only the current context.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace loop {

namespace detail {

// An immutable mapping var-id -> value, shared between copies until one of them is written.
using ContextMap = std::map<std::uint64_t, std::shared_ptr<const void>>;

struct ContextData {
  std::shared_ptr<const ContextMap> vars;  // null = empty
  bool entered = false;
  std::atomic<std::uint32_t> refs{0};  // ContextRef's count (for heap-allocated ones)
};

// A counted reference to a heap-allocated ContextData. Every handle carries one: 8 bytes
// where a shared_ptr takes 16, and a pending callback's size is most of what a burst of them
// costs (loop/handle.hpp).
class ContextRef {
 public:
  ContextRef() = default;
  ContextRef(std::nullptr_t) noexcept {}
  /// A new, empty context.
  static ContextRef make() { return ContextRef(new ContextData); }
  ContextRef(const ContextRef& o) noexcept : p_(o.p_) {
    if (p_) p_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  ContextRef(ContextRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  ContextRef& operator=(ContextRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~ContextRef() {
    if (p_ && p_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete p_;
  }
  ContextData* get() const noexcept { return p_; }
  ContextData* operator->() const noexcept { return p_; }
  ContextData& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  friend bool operator==(const ContextRef& a, const ContextRef& b) noexcept { return a.p_ == b.p_; }

 private:
  explicit ContextRef(ContextData* fresh) noexcept : p_(fresh) {
    p_->refs.store(1, std::memory_order_relaxed);
  }
  ContextData* p_ = nullptr;
};

// The context callbacks of this thread see; never null while code runs inside Context::run.
ContextData* current_context_data();
void set_current_context_data(ContextData* data);
std::uint64_t next_context_var_id();
// The current context for a callback being scheduled: null when it holds no variables.
ContextRef capture_context();

// Makes `data` current for the lifetime of the guard (Context.run's enter/exit).
class ContextScope {
 public:
  explicit ContextScope(ContextData* data);
  ~ContextScope();
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  ContextData* data_;
  ContextData* previous_;
};

}  // namespace detail

/// A snapshot of context variables (contextvars.Context).
class Context {
 public:
  /// An empty context.
  Context() : data_(detail::ContextRef::make()) {}
  explicit Context(detail::ContextRef data) : data_(std::move(data)) {}

  /// Runs fn(args...) with this context current; throws std::runtime_error if it is already
  /// entered (as Context.run raises RuntimeError).
  template <class F, class... Args>
  decltype(auto) run(F&& fn, Args&&... args) const {
    detail::ContextScope scope(data_.get());
    return std::forward<F>(fn)(std::forward<Args>(args)...);
  }

  /// A shallow copy (Context.copy()).
  Context copy() const {
    auto d = detail::ContextRef::make();
    d->vars = data_->vars;
    return Context(std::move(d));
  }

  std::size_t size() const { return data_->vars ? data_->vars->size() : 0; }
  const detail::ContextRef& data() const { return data_; }

 private:
  detail::ContextRef data_;
};

/// A copy of the current context (contextvars.copy_context()).
Context copy_context();

template <class T>
class ContextVar;

/// Returned by ContextVar::set; restores the previous value with ContextVar::reset.
template <class T>
class Token {
 public:
  const ContextVar<T>& var() const { return *var_; }
  /// The value before set(), or nullopt if the variable was unset (Token.MISSING).
  const std::optional<T>& old_value() const { return old_; }

 private:
  friend class ContextVar<T>;
  Token(const ContextVar<T>* var, detail::ContextData* ctx, std::optional<T> old)
      : var_(var), ctx_(ctx), old_(std::move(old)) {}
  const ContextVar<T>* var_;
  detail::ContextData* ctx_;
  std::optional<T> old_;
  bool used_ = false;
};

/// A context variable (contextvars.ContextVar).
template <class T>
class ContextVar {
 public:
  explicit ContextVar(std::string name, std::optional<T> default_value = std::nullopt)
      : name_(std::move(name)),
        default_(std::move(default_value)),
        id_(detail::next_context_var_id()) {}

  const std::string& name() const { return name_; }

  /// The value in the current context, else the default; throws std::out_of_range (Python's
  /// LookupError) when there is neither.
  T get() const {
    if (auto v = lookup()) return *v;
    if (default_) return *default_;
    throw std::out_of_range("ContextVar '" + name_ + "' has no value");
  }
  T get(T fallback) const {
    if (auto v = lookup()) return *v;
    return default_ ? *default_ : fallback;
  }

  Token<T> set(T value) const {
    detail::ContextData* ctx = detail::current_context_data();
    Token<T> token(this, ctx, lookup());
    auto vars = ctx->vars ? std::make_shared<detail::ContextMap>(*ctx->vars)
                          : std::make_shared<detail::ContextMap>();
    (*vars)[id_] = std::make_shared<const T>(std::move(value));
    ctx->vars = std::move(vars);
    return token;
  }

  /// Restores the value the variable had before the set() that made `token`.
  void reset(Token<T>& token) const {
    if (token.used_) throw std::runtime_error("Token has already been used once");
    if (token.var_ != this)
      throw std::invalid_argument("Token was created by a different ContextVar");
    detail::ContextData* ctx = detail::current_context_data();
    if (token.ctx_ != ctx) throw std::invalid_argument("Token was created in a different Context");
    auto vars = ctx->vars ? std::make_shared<detail::ContextMap>(*ctx->vars)
                          : std::make_shared<detail::ContextMap>();
    if (token.old_)
      (*vars)[id_] = std::make_shared<const T>(*token.old_);
    else
      vars->erase(id_);
    ctx->vars = std::move(vars);
    token.used_ = true;
  }

 private:
  std::optional<T> lookup() const {
    const detail::ContextData* ctx = detail::current_context_data();
    if (!ctx->vars) return std::nullopt;
    auto it = ctx->vars->find(id_);
    if (it == ctx->vars->end()) return std::nullopt;
    return *static_cast<const T*>(it->second.get());
  }

  std::string name_;
  std::optional<T> default_;
  std::uint64_t id_;
};

}  // namespace loop
