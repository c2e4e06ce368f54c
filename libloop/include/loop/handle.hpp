// Handle and TimerHandle: a scheduled callback, as asyncio.Handle / asyncio.TimerHandle.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "loop/block_cache.hpp"
#include "loop/context.hpp"

namespace loop {

class EventLoop;

/// Gives a callback a readable name in reports and traces, as functools.partial's repr does
/// for asyncio: loop.call_soon(loop::named("print_hello", fn), args...).
template <class F>
struct Named {
  const char* name;
  F fn;
  template <class... A>
  decltype(auto) operator()(A&&... a) {
    return std::invoke(fn, std::forward<A>(a)...);
  }
};
template <class F>
Named<std::decay_t<F>> named(const char* name, F&& fn) {
  return {name, std::forward<F>(fn)};
}

namespace detail {

// Readable names for callables: demangled types, symbol names for function pointers.
std::string demangle(const char* mangled);
std::string function_name(const void* fn_address, const std::type_info& type);
// Where a handle was created, captured in debug mode (asyncio's _source_traceback).
struct Origin {
  std::vector<void*> frames;
  std::string describe() const;
};
std::unique_ptr<Origin> capture_origin();

template <class F>
std::string callable_name(const F& fn) {
  if constexpr (requires {
                  { fn.name } -> std::convertible_to<const char*>;
                }) {
    return fn.name;
  } else if constexpr (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) {
    return function_name(reinterpret_cast<const void*>(fn), typeid(F));
  } else {
    return demangle(typeid(F).name());
  }
}

enum class HandleKind : std::uint8_t { soon, timer, threadsafe, io, signal, task, future };
const char* kind_name(HandleKind kind);

// The shared state behind Handle/TimerHandle; reference counted because both the loop's
// queues and the caller may hold it.
class HandleImpl {
 public:
  virtual ~HandleImpl() {
    if (has_origin_) forget_origin();
  }
  virtual void invoke() = 0;
  virtual std::string callback_name() const = 0;
  /// callback_name() when it is a constant (a named() callback, the loop's own handles), else
  /// null: a traced callback then needs no string made for its name.
  virtual const char* constant_name() const noexcept { return nullptr; }
  /// Destroys the callable and its arguments of a cancelled handle that will not run (asyncio's
  /// Handle.cancel() sets _callback and _args to None). Only timers have something to do.
  virtual void release_callback() noexcept {}

  // One per callback: from the loop's slab allocator, not malloc (loop/block_cache.hpp).
  static void* operator new(std::size_t size) { return allocate_block(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_block(p, size); }

  // The count is atomic because a Handle may be dropped on any thread. But a caller holding
  // the only reference (a count of 1) races with no one: no other thread can add or drop one.
  // Then a plain store does, and the atomic read-modify-writes (a locked instruction each,
  // three per call_soon callback) are left to shared handles. libstdc++'s shared_ptr releases
  // its last reference the same way. (call_soon, a million callbacks: 3 -> 1 locked
  // instruction each; all three made plain took 0.073 -> 0.066 us.)
  void add_ref() noexcept {
    if (refs_.load(std::memory_order_relaxed) == 1) {
      refs_.store(2, std::memory_order_relaxed);
    } else {
      refs_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  /// The first reference of a new handle: nobody else can see it yet, so no atomic add.
  void adopt_first_ref() noexcept { refs_.store(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acquire: whatever the other holders did before they let go happens before the delete.
    if (refs_.load(std::memory_order_acquire) == 1 ||
        refs_.fetch_sub(1, std::memory_order_acq_rel) == 1)
      delete this;
  }

  std::uint64_t id = 0;  // also the FIFO order among timers with the same deadline
  ContextRef context;    // null: run in a fresh empty context
  HandleKind kind = HandleKind::soon;
  bool cancelled = false;
  bool scheduled = false;  // TimerHandle: still in the loop's heap

  /// Where the handle was created (debug mode; asyncio's _source_traceback), or null. Kept
  /// in a table aside: a pointer in every handle would make each one 8 bytes bigger.
  const Origin* origin() const;
  void set_origin(std::unique_ptr<Origin> origin);

 private:
  void forget_origin() noexcept;
  bool has_origin_ = false;
  std::atomic<std::uint32_t> refs_{0};
};

// A timer's own state (asyncio.TimerHandle's _when; the loop, told when it is cancelled). Only
// timers carry it: every other handle is 16 bytes smaller for it.
class TimerHandleImpl : public HandleImpl {
 public:
  EventLoop* loop = nullptr;
  double when = 0;  // the deadline, on the loop's clock
};

// `Base` is HandleImpl, or TimerHandleImpl for call_later/call_at.
template <class Base, class F, class... Args>
class CallbackImpl final : public Base {
 public:
  template <class G, class... A>
  explicit CallbackImpl(G&& fn, A&&... args)
      : fn_(std::forward<G>(fn)), args_(std::forward<A>(args)...) {}
  void invoke() override { std::apply(fn_, args_); }
  std::string callback_name() const override { return callable_name(fn_); }
  const char* constant_name() const noexcept override {
    if constexpr (requires {
                    { fn_.name } -> std::convertible_to<const char*>;
                  })
      return fn_.name;
    else
      return nullptr;
  }

  // With the exact alignment, a block need not be rounded up to 16 bytes.
  static void* operator new(std::size_t size) {
    return allocate_block(size, alignof(CallbackImpl));
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    deallocate_block(p, size, alignof(CallbackImpl));
  }

 private:
  // A lambda without captures and an empty argument list take no room: a pending callback's
  // bytes are most of what a burst of them costs (page faults included).
  [[no_unique_address]] F fn_;
  [[no_unique_address]] std::tuple<Args...> args_;
};

// A timer whose callable or arguments hold something to let go of (a capture or an argument
// with a destructor). A cancelled timer may stay in the heap until its deadline, so they are
// destroyed when it is cancelled, as asyncio's TimerHandle.cancel() drops them: a connection a
// cancelled timeout captured is not kept for the rest of the timeout. Its name survives
// when it is a constant (loop::named) or the callable's type; a function pointer's is its type.
template <class F, class... Args>
class ReleasableTimerImpl final : public TimerHandleImpl {
 public:
  template <class G, class... A>
  explicit ReleasableTimerImpl(G&& fn, A&&... args)
      : callback_(std::in_place, std::forward<G>(fn), std::forward<A>(args)...) {}
  void invoke() override { std::apply(callback_->fn, callback_->args); }
  std::string callback_name() const override {
    if (callback_) return callable_name(callback_->fn);
    return released_name_ ? std::string(released_name_) : demangle(typeid(F).name());
  }
  const char* constant_name() const noexcept override {
    if constexpr (requires(const F& f) {
                    { f.name } -> std::convertible_to<const char*>;
                  })
      return callback_ ? callback_->fn.name : released_name_;
    else
      return nullptr;
  }
  void release_callback() noexcept override {
    if (!callback_) return;
    released_name_ = constant_name();
    callback_.reset();  // may run any destructor: the caller keeps this handle alive
  }

  static void* operator new(std::size_t size) {
    return allocate_block(size, alignof(ReleasableTimerImpl));
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    deallocate_block(p, size, alignof(ReleasableTimerImpl));
  }

 private:
  struct Callback {
    template <class G, class... A>
    explicit Callback(G&& g, A&&... a) : fn(std::forward<G>(g)), args(std::forward<A>(a)...) {}
    [[no_unique_address]] F fn;
    [[no_unique_address]] std::tuple<Args...> args;
  };
  std::optional<Callback> callback_;
  const char* released_name_ = nullptr;
};

// An intrusive pointer to a HandleImpl.
class HandleRef {
 public:
  struct Adopt {};
  struct Owned {};
  HandleRef() = default;
  /// Takes a new handle's first reference (see HandleImpl::adopt_first_ref).
  HandleRef(HandleImpl* fresh, Adopt) noexcept : p_(fresh) { p_->adopt_first_ref(); }
  /// Takes over a reference someone holds already (one that release() let go of).
  HandleRef(HandleImpl* p, Owned) noexcept : p_(p) {}
  explicit HandleRef(HandleImpl* p) noexcept : p_(p) {
    if (p_) p_->add_ref();
  }
  HandleRef(const HandleRef& o) noexcept : HandleRef(o.p_) {}
  HandleRef(HandleRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  HandleRef& operator=(HandleRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~HandleRef() {
    if (p_) p_->release();
  }
  HandleImpl* get() const noexcept { return p_; }
  /// Lets go of the pointer without dropping its reference (see the Owned constructor).
  HandleImpl* release() noexcept { return std::exchange(p_, nullptr); }
  HandleImpl* operator->() const noexcept { return p_; }
  HandleImpl& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  HandleImpl* p_ = nullptr;
};

template <class F, class... Args>
HandleRef make_handle(F&& fn, Args&&... args) {
  return HandleRef(new CallbackImpl<HandleImpl, std::decay_t<F>, std::decay_t<Args>...>(
                       std::forward<F>(fn), std::forward<Args>(args)...),
                   HandleRef::Adopt{});
}

/// A handle whose impl is a TimerHandleImpl (call_later, call_at).
template <class F, class... Args>
HandleRef make_timer_handle(F&& fn, Args&&... args) {
  constexpr bool nothing_to_release = std::is_trivially_destructible_v<std::decay_t<F>> &&
                                      (std::is_trivially_destructible_v<std::decay_t<Args>> && ...);
  using Impl =
      std::conditional_t<nothing_to_release,
                         CallbackImpl<TimerHandleImpl, std::decay_t<F>, std::decay_t<Args>...>,
                         ReleasableTimerImpl<std::decay_t<F>, std::decay_t<Args>...>>;
  auto* impl = new Impl(std::forward<F>(fn), std::forward<Args>(args)...);
  impl->kind = HandleKind::timer;
  return HandleRef(impl, HandleRef::Adopt{});
}

}  // namespace detail

/// A callback wrapper returned by call_soon and friends (asyncio.Handle).
class Handle {
 public:
  Handle() = default;
  explicit Handle(detail::HandleRef ref) : ref_(std::move(ref)) {}

  /// Cancels the callback; no effect if it already ran or was cancelled. A timer still
  /// scheduled destroys its callable and arguments at once, as asyncio's cancel() drops them.
  void cancel();
  bool cancelled() const { return ref_ && ref_->cancelled; }
  /// The callback's readable name: its function, lambda or loop::named() name.
  std::string name() const { return ref_ ? ref_->callback_name() : std::string("<none>"); }
  /// e.g. "<Handle print_hello() created at main>" (the origin only in debug mode).
  std::string repr() const;
  Context get_context() const;
  std::uint64_t id() const { return ref_ ? ref_->id : 0; }
  explicit operator bool() const { return static_cast<bool>(ref_); }
  const detail::HandleRef& ref() const { return ref_; }

 protected:
  detail::HandleRef ref_;
};

/// A callback scheduled for a point in time (asyncio.TimerHandle).
class TimerHandle : public Handle {
 public:
  TimerHandle() = default;
  explicit TimerHandle(detail::HandleRef ref) : Handle(std::move(ref)) {}
  /// The scheduled time, on the loop's clock (loop.time()).
  double when() const {
    return ref_ ? static_cast<const detail::TimerHandleImpl&>(*ref_).when : 0.0;
  }
};

}  // namespace loop
