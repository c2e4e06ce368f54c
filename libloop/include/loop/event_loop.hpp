// loop::EventLoop: asyncio's BaseEventLoop, on an asio::io_context.
// Its member templates (futures, tasks, the executor) are defined in the headers that
// <loop/loop.hpp> gathers: include that one.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "loop/clock.hpp"
#include "loop/connection_options.hpp"
#include "loop/context.hpp"
#include "loop/datagram.hpp"
#include "loop/exception_context.hpp"
#include "loop/executor.hpp"
#include "loop/handle.hpp"
#include "loop/ready_queue.hpp"
#include "loop/subprocess_options.hpp"
#include "loop/timer_heap.hpp"
#include "loop/trace.hpp"
#include "loop/transports.hpp"

#ifndef LOOP_TRACE_HOOKS
#define LOOP_TRACE_HOOKS 1
#endif

namespace loop {

/// False only in a build made to measure the tracing hooks' cost (CMake LOOP_TRACE_HOOKS=OFF).
inline constexpr bool kTraceHooks = LOOP_TRACE_HOOKS != 0;

class EventLoop;
template <class T>
class Future;
template <class T>
class Task;
template <class T>
class Coroutine;
class TaskBase;
class AnyCoroutine;
class Server;
class SocketAddress;
struct AddrInfo;

namespace detail {
class FdWatchers;
class Poller;
class AsioReactorWatch;
class SignalHandlers;
class FutureStateBase;
class TaskStateBase;
class AsyncGenStateBase;
struct LoopLink;

/// Something that keeps itself alive through the loop (a transport from its start to its
/// connection_lost). If the loop is destroyed first, it tells each one to let go of itself
/// and of its protocol: otherwise their reference cycles would outlive the loop as leaks.
class LoopResource {
 public:
  /// Close the fd, drop the self-reference and the protocol; call no protocol method.
  virtual void loop_destroyed() noexcept = 0;
  /// Whether the loop holds it (a destructor must not reach a loop that is gone).
  bool registered() const { return registered_; }

 protected:
  ~LoopResource() = default;

 private:
  friend class loop::EventLoop;
  bool registered_ = false;
};
}  // namespace detail

class EventLoop {
 public:
  using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;
  using TaskFactory = std::function<TaskBase(EventLoop&, AnyCoroutine)>;

  /// A loop on the steady clock; pass make_virtual_clock() for simulated time.
  explicit EventLoop(std::unique_ptr<Clock> clock = nullptr);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // ---- Running and stopping the loop -------------------------------------------------------
  /// Runs until stop() is called.
  void run_forever();
  /// Runs until `future` is done; returns its result or rethrows its exception.
  template <class T>
  T run_until_complete(Future<T> future);
  template <class T>
  T run_until_complete(Task<T> task);
  /// Wraps the coroutine in a Task first.
  template <class T>
  T run_until_complete(Coroutine<T> coro);
  /// Stops after the batch of callbacks now running (or, before run_forever, after one
  /// iteration that polls with a zero timeout).
  void stop();
  bool is_running() const { return running_; }
  bool is_closed() const { return closed_.load(std::memory_order_acquire); }
  /// Drops pending callbacks and shuts the default executor down without waiting. Throws
  /// std::runtime_error if the loop is running; a second call does nothing.
  void close();
  /// Closes every async generator this loop iterated that is still open.
  Coroutine<void> shutdown_asyncgens();

  // ---- Scheduling callbacks ----------------------------------------------------------------
  /// Runs callback(args...) in the next iteration; FIFO; exactly once unless cancelled.
  template <class F, class... Args>
  Handle call_soon(F&& callback, Args&&... args);
  /// call_soon with an explicit Context to run in.
  template <class F, class... Args>
  Handle call_soon_in(const Context& ctx, F&& callback, Args&&... args);
  /// call_soon from any thread; wakes the loop if it sleeps in its poll.
  template <class F, class... Args>
  Handle call_soon_threadsafe(F&& callback, Args&&... args);
  /// call_soon_threadsafe with an explicit Context (asyncio's context= argument).
  template <class F, class... Args>
  Handle call_soon_threadsafe_in(const Context& ctx, F&& callback, Args&&... args);

  // ---- Scheduling delayed callbacks --------------------------------------------------------
  template <class F, class... Args>
  TimerHandle call_later(double delay, F&& callback, Args&&... args);
  template <class F, class... Args>
  TimerHandle call_at(double when, F&& callback, Args&&... args);
  /// call_later and call_at with an explicit Context (asyncio's context= argument).
  template <class F, class... Args>
  TimerHandle call_later_in(const Context& ctx, double delay, F&& callback, Args&&... args);
  template <class F, class... Args>
  TimerHandle call_at_in(const Context& ctx, double when, F&& callback, Args&&... args);
  /// The loop's clock, in seconds.
  double time() const { return clock_->now(); }
  const Clock& clock() const { return *clock_; }

  // ---- Futures and tasks -------------------------------------------------------------------
  template <class T = void>
  Future<T> create_future();
  template <class T>
  Task<T> create_task(Coroutine<T> coro, std::string name = {});
  void set_task_factory(TaskFactory factory) { task_factory_ = std::move(factory); }
  const TaskFactory& get_task_factory() const { return task_factory_; }

  // ---- The executor ------------------------------------------------------------------------
  /// Runs fn(args...) on `executor` (nullptr = the default thread pool); the Future gets its
  /// result or exception.
  template <class F, class... Args>
  auto run_in_executor(Executor* executor, F&& fn, Args&&... args)
      -> Future<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>>;
  void set_default_executor(std::unique_ptr<Executor> executor);

  // ---- Error handling ----------------------------------------------------------------------
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  const ExceptionHandler& get_exception_handler() const { return exception_handler_; }
  /// Logs the context to stderr (asyncio logs it with logging.error).
  void default_exception_handler(const ExceptionContext& context);
  /// Calls the handler set, else the default one; never throws.
  void call_exception_handler(const ExceptionContext& context) noexcept;

  // ---- Debug mode --------------------------------------------------------------------------
  bool get_debug() const { return debug_; }
  void set_debug(bool enabled) { debug_ = enabled; }
  /// Callbacks running longer than this are reported in debug mode (seconds, default 0.1).
  double slow_callback_duration = 0.1;

  // ---- Tracing -----------------------------------------------------------------------------
  void set_tracer(std::shared_ptr<Tracer> tracer) {
    if (!kTraceHooks && tracer) throw std::logic_error("libloop was built without tracing hooks");
    tracer_ = std::move(tracer);
  }
  /// The tracer set, to share it (null if none).
  std::shared_ptr<Tracer> shared_tracer() const { return tracer_; }
  /// Every tracing hook tests this first: with no tracer, a load and a branch.
  Tracer* tracer() const {
    if constexpr (kTraceHooks) return tracer_.get();
    return nullptr;
  }
  /// Adds "ts" and sends the record to the tracer, if there is one.
  void trace(const char* ev, nlohmann::json fields = nlohmann::json::object());
  /// The same for a record of scalar fields, which the JSON Lines sink writes without making a
  /// JSON object: the loop's frequent records (callback, iteration, data_received) use it.
  void trace_flat(const char* ev, std::initializer_list<TraceField> fields = {});

  // ---- Watching file descriptors (libloop/src/io/fd_watch.cpp) -----------------------------
  /// Runs callback(args...) in every iteration in which `fd` is readable (level-triggered, as
  /// asyncio's selector); re-adding replaces the callback. Sockets, pipes, FIFOs, ttys;
  /// a regular file is refused with std::system_error(EPERM), as epoll (and asyncio) refuse it.
  /// The fd stays the caller's: remove the reader before closing it. A transport's fd is the
  /// transport's: refused with std::runtime_error until it is closing (asyncio's
  /// "File descriptor N is used by transport"), by the remove_* calls too.
  template <class F, class... Args>
  Handle add_reader(int fd, F&& callback, Args&&... args);
  /// Stops watching `fd` for reading; returns whether a reader was registered (false on a
  /// closed loop).
  bool remove_reader(int fd);
  /// As add_reader, for writability.
  template <class F, class... Args>
  Handle add_writer(int fd, F&& callback, Args&&... args);
  bool remove_writer(int fd);

  // ---- Low-level socket operations (libloop/src/io/sock_ops.cpp) ---------------------------
  // `sock` is a raw fd the caller owns; it must be non-blocking: in debug mode a blocking one
  // is refused with std::invalid_argument, as asyncio does (sock_sendfile always checks: one
  // fcntl against a whole file). Errors are std::system_error with the errno. Cancelling the
  // awaiting task stops watching the socket. Buffers and data passed by view must stay valid until
  // the coroutine is done (the coroutine is lazy: it starts when awaited).
  /// Receives up to `nbytes` bytes; an empty string means EOF.
  Coroutine<std::string> sock_recv(int sock, std::size_t nbytes);
  /// Receives into `buf`; returns the number of bytes (0 at EOF). A large buffer is best
  /// page-aligned (std::aligned_alloc(4096, n)): on AMD Zen the kernel copies ten times slower
  /// into 1 to 31 bytes past a page boundary, where malloc puts a block of 128 KiB or more.
  Coroutine<std::size_t> sock_recv_into(int sock, std::span<char> buf);
  /// Sends all of `data` (it must stay valid until done), waiting for room as needed.
  Coroutine<void> sock_sendall(int sock, std::string_view data);
  /// Connects to `address`; ECONNREFUSED and the like as std::system_error.
  Coroutine<void> sock_connect(int sock, SocketAddress address);
  /// Resolves host/port with getaddrinfo (for the socket's family) first, then connects.
  Coroutine<void> sock_connect(int sock, std::string host, unsigned short port);
  /// Accepts a connection: the new socket (non-blocking, close-on-exec, the caller's to
  /// close) and the peer's address.
  Coroutine<std::pair<int, SocketAddress>> sock_accept(int sock);
  /// Sends `count` bytes (all to EOF if nullopt) of `file_fd` from `offset` over the connected
  /// non-blocking socket `sock`: sendfile(2) where the kernel allows, else (fallback=true) read
  /// and send; SendfileNotAvailableError when neither. Returns the bytes sent; the file's
  /// position is left after the last byte sent, also on error (asyncio's sock_sendfile).
  Coroutine<std::size_t> sock_sendfile(int sock, int file_fd, std::size_t offset = 0,
                                       std::optional<std::size_t> count = std::nullopt,
                                       bool fallback = true);

  // ---- DNS (libloop/src/io/dns.cpp) ---------------------------------------------------------
  /// getaddrinfo(3) in the default executor, so the loop never blocks; an empty host or port
  /// is passed as NULL. Failures throw loop::GaiError (dns.hpp) naming the host.
  Coroutine<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port, int family = 0,
                                               int type = 0, int proto = 0, int flags = 0);
  /// getnameinfo(3) in the default executor: {host, service}.
  Coroutine<std::pair<std::string, std::string>> getnameinfo(SocketAddress address, int flags = 0);

  // ---- UNIX signals (libloop/src/io/signals.cpp) --------------------------------------------
  /// Runs callback(args...) as an ordinary loop callback (never in signal context) each time
  /// `sig` is delivered; re-adding replaces. std::invalid_argument for an invalid or
  /// uncatchable signal (SIGKILL, SIGSTOP), std::runtime_error if the setup fails.
  template <class F, class... Args>
  void add_signal_handler(int sig, F&& callback, Args&&... args);
  /// Removes the handler and restores the default disposition (SIG_DFL); returns whether a
  /// handler was registered. close() removes them all.
  bool remove_signal_handler(int sig);

  // ---- Streaming connections and servers (libloop/src/transports/) ------------------------
  // protocol_factory: any callable returning std::shared_ptr<P>, P a Protocol. Defined in
  // <loop/connections.hpp>.
  /// Connects to host:port (resolved without blocking; each address tried in turn, the errors
  /// combined) and returns (transport, protocol) once connection_made has run.
  template <class F>
  auto create_connection(F protocol_factory, std::string host, int port,
                         ConnectionOptions options = {})
      -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>>;
  /// The same over the connected socket options.sock.
  template <class F>
  auto create_connection(F protocol_factory, ConnectionOptions options)
      -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>>;
  /// Connects to a unix socket path ('@name': Linux abstract namespace); empty: options.sock.
  template <class F>
  auto create_unix_connection(F protocol_factory, std::string path, ConnectionOptions options = {})
      -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>>;
  /// Wraps a socket accepted outside the loop (the transport owns it).
  template <class F>
  auto connect_accepted_socket(F protocol_factory, int sock, ConnectionOptions options = {})
      -> Coroutine<ConnectionPair<typename std::invoke_result_t<F&>::element_type>>;
  /// Listens on host:port; an empty host: every interface, one socket per family.
  template <class F>
  Coroutine<std::shared_ptr<Server>> create_server(F protocol_factory, std::string host, int port,
                                                   ServerOptions options = {});
  /// Listens on every host of the list (empty list: every interface).
  template <class F>
  Coroutine<std::shared_ptr<Server>> create_server(F protocol_factory,
                                                   std::vector<std::string> hosts, int port,
                                                   ServerOptions options = {});
  /// Listens on the bound socket options.sock.
  template <class F>
  Coroutine<std::shared_ptr<Server>> create_server(F protocol_factory, ServerOptions options);
  /// Listens on a unix socket path (a stale socket file is replaced) or on options.sock when
  /// path is empty.
  template <class F>
  Coroutine<std::shared_ptr<Server>> create_unix_server(F protocol_factory, std::string path,
                                                        ServerOptions options = {});

  // ---- Datagrams (libloop/src/transports/datagram*.cpp) -------------------------------------
  /// asyncio's create_datagram_endpoint: a UDP (or unix datagram) socket bound to
  /// options.local_addr and/or connected to options.remote_addr (host names resolved off the
  /// loop's thread), or options.sock. protocol_factory() returns std::shared_ptr<P>, P a
  /// DatagramProtocol; the result is (transport, protocol) once connection_made has run.
  /// std::invalid_argument for reuse_address=true and for options that contradict each other.
  template <class Factory>
  Coroutine<std::pair<std::shared_ptr<DatagramTransport>, std::invoke_result_t<Factory&>>>
  create_datagram_endpoint(Factory protocol_factory, DatagramEndpointOptions options = {});

  // ---- Pipes (libloop/src/transports/pipe*.cpp) ---------------------------------------------
  /// Reads the pipe (FIFO, socket or character device) `fd` into a Protocol; the fd is made
  /// non-blocking and the transport owns it (closes it after connection_lost).
  /// std::invalid_argument for a regular file. Result: (transport, protocol).
  template <class Factory>
  Coroutine<std::pair<std::shared_ptr<ReadTransport>, std::invoke_result_t<Factory&>>>
  connect_read_pipe(Factory protocol_factory, int fd);
  /// Writes to the pipe `fd` (flow control at the write-buffer water marks); a reader that
  /// goes away surfaces as connection_lost(BrokenPipeError-like std::system_error(EPIPE)),
  /// never as SIGPIPE. The transport owns the fd.
  template <class Factory>
  Coroutine<std::pair<std::shared_ptr<WriteTransport>, std::invoke_result_t<Factory&>>>
  connect_write_pipe(Factory protocol_factory, int fd);

  // ---- Subprocesses (libloop/src/subprocess/; definitions in loop/subprocess.hpp) ----------
  /// Starts `program` with arguments `args` (argv[0] is `program`; looked up in PATH unless it
  /// has a '/') and connects its pipes (options: PIPE, DEVNULL, an fd, STDOUT for stderr; env,
  /// cwd). protocol_factory() returns std::shared_ptr<P>, P a SubprocessProtocol. Result:
  /// (transport, protocol) once the pipes are connected. A program that cannot be run throws
  /// std::system_error (ENOENT, EACCES, ...) naming it, as asyncio raises FileNotFoundError.
  /// The child's exit is seen through a pidfd (a waitpid thread where there is none): no
  /// SIGCHLD handler, no other process's child reaped, no zombie left.
  template <class Factory>
  Coroutine<std::pair<std::shared_ptr<SubprocessTransport>, std::invoke_result_t<Factory&>>>
  subprocess_exec(Factory protocol_factory, std::string program, std::vector<std::string> args = {},
                  SubprocessOptions options = {});
  /// As subprocess_exec, for `cmd` run by "/bin/sh -c".
  template <class Factory>
  Coroutine<std::pair<std::shared_ptr<SubprocessTransport>, std::invoke_result_t<Factory&>>>
  subprocess_shell(Factory protocol_factory, std::string cmd, SubprocessOptions options = {});

  // ---- Sending files (libloop/src/transports/sendfile.cpp) ---------------------------------
  /// Sends `count` bytes (to EOF if nullopt) of `file_fd` from `offset` over `transport` once its
  /// write buffer is flushed: sendfile(2) on plain sockets, else (fallback) read and write
  /// through the transport. Returns the bytes sent; the file position ends after them. A
  /// `count` of 0 is refused (std::invalid_argument), as by sock_sendfile.
  Coroutine<std::size_t> sendfile(Transport& transport, int file_fd, std::size_t offset = 0,
                                  std::optional<std::size_t> count = std::nullopt,
                                  bool fallback = true);

  // ---- TLS upgrade (libloop/src/tls/start_tls.cpp) ------------------------------------------
  /// asyncio's start_tls: puts TLS on the live connection `transport` (whose protocol is
  /// `protocol`) and returns the new transport once the handshake is done; `protocol` then
  /// gets the decrypted data (its connection_made is not called again). The old transport
  /// carries the records from now on: do not use it (its writes would bypass TLS). Reading is
  /// paused until the layer is in place, so that no byte is read past it. On failure the
  /// transport is closed and the error (SSLError, a timeout...) thrown. server_hostname,
  /// ssl_handshake_timeout: as create_connection's.
  Coroutine<std::shared_ptr<Transport>> start_tls(
      std::shared_ptr<Transport> transport, std::shared_ptr<Protocol> protocol,
      std::shared_ptr<SSLContext> sslcontext, bool server_side = false,
      std::optional<std::string> server_hostname = std::nullopt,
      std::optional<double> ssl_handshake_timeout = std::nullopt);

  // ---- For the library's own layers (transports, futures, tasks) ----------------------------
  asio::io_context& io_context() { return io_; }
  /// The level-triggered epoll the loop blocks in: connections and add_reader/add_writer.
  detail::Poller& poller() { return *poller_; }
  /// Before giving `fd` to another watcher (a transport, a pipe): drops the registration that
  /// add_reader/add_writer keep for an fd nobody watches any more. The Poller refuses an fd
  /// twice; for an fd going to asio, the idle registration would report it once more.
  void release_idle_fd_watch(int fd);
  /// asyncio's _transports: `transport` owns `fd` (nullptr: no longer). Socket and datagram
  /// transports claim their fd until the socket closes; sendfile lends it out meanwhile.
  void set_fd_transport(int fd, const BaseTransport* transport);
  /// add_reader (direction 0) or add_writer (1). `owner`, if not null, tags the watch (the
  /// sock_* coroutines' wait: its future); remove_fd_watch with an owner removes the watch
  /// only while it still carries that tag, as asyncio's _sock_read_done leaves a reader whose
  /// handle was replaced.
  template <class F, class... Args>
  Handle watch_fd(int fd, int direction, const void* owner, F&& callback, Args&&... args);
  bool remove_fd_watch(int fd, int direction, const void* owner = nullptr);
  /// Throws std::runtime_error when a transport that is not closing owns `fd` (asyncio's
  /// _ensure_fd_no_transport): add_reader/add_writer/remove_reader/remove_writer refuse it.
  void ensure_fd_no_transport(int fd) const;
  /// Throws std::runtime_error("Event loop is closed") after close().
  void check_closed() const;
  /// Throws std::runtime_error when this loop or another one is running in this thread
  /// (asyncio's _check_running): run_forever and run_until_complete refuse before doing
  /// anything, so a coroutine given to a refused run_until_complete never starts.
  void check_running() const;
  /// In debug mode, refuses a call from a thread other than the one running the loop.
  void check_thread() const;
  /// Gives the exception handler what a handle's callback raised: "Exception in callback
  /// name()", with `h` as the context's handle.
  void report_callback_exception(detail::HandleImpl& h, std::exception_ptr e);
  /// Puts a handle on the ready queue (call_soon's second half).
  Handle schedule(detail::HandleRef handle, const char* caller);
  /// Puts a handle on the ready queue from another thread.
  void schedule_threadsafe(detail::HandleRef handle);
  /// `handle` from detail::make_timer_handle.
  TimerHandle schedule_timer(detail::HandleRef handle, double when);
  /// Tracing: when a handle was put on the ready queue (timers: their deadline), 0 if the
  /// tracer was not set then. Forgets it.
  double take_trace_scheduled(const detail::HandleImpl& handle);
  void timer_handle_cancelled(detail::TimerHandleImpl& handle);
  void register_task(std::shared_ptr<detail::TaskStateBase> task);
  void unregister_task(detail::TaskStateBase* task);
  std::size_t pending_task_count() const { return tasks_.size(); }
  template <class F>
  void for_each_task(F&& fn) const {
    for (auto& [ptr, task] : tasks_) fn(task);
  }
  void register_asyncgen(detail::AsyncGenStateBase* gen);
  void unregister_asyncgen(detail::AsyncGenStateBase* gen);
  void register_resource(detail::LoopResource* r) {
    if (!r->registered_) resources_.insert(r);
    r->registered_ = true;
  }
  void unregister_resource(detail::LoopResource* r) {
    if (r->registered_) resources_.erase(r);
    r->registered_ = false;
  }
  Executor& default_executor();
  /// A weak link other threads use to reach this loop (and find it gone after destruction).
  std::shared_ptr<detail::LoopLink> link() const { return link_; }
  /// How many callbacks are ready (for tests and the trace).
  std::size_t ready_count() const { return ready_.size(); }
  std::size_t scheduled_timer_count() const { return timers_.size(); }

 private:
  /// The shared halves of call_soon_threadsafe(_in) and call_at/call_later(_in).
  template <class F, class... Args>
  Handle call_soon_threadsafe_with(detail::ContextRef ctx, F&& callback, Args&&... args);
  template <class F, class... Args>
  TimerHandle call_at_with(detail::ContextRef ctx, double when, F&& callback, Args&&... args);
  void run_once();
  double poll(double timeout);  // returns the number of I/O events processed
  std::size_t poll_io(double timeout);
  void run_handle(detail::HandleImpl& handle);
  void drop_cancelled_timers();
  template <class T>
  T run_future_until_complete(Future<T> future);

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  // After io_, before everything registered in it: destroyed after the transports and fd
  // watches let go of their entries.
  std::unique_ptr<detail::Poller> poller_;
  std::unique_ptr<detail::AsioReactorWatch> asio_watch_;  // asio's epoll fd, in poller_
  // Before ready_: a handle destroyed with the queue may release a transport, which then
  // unregisters itself from this set.
  std::unordered_set<detail::LoopResource*> resources_;
  std::unique_ptr<Clock> clock_;
  detail::ReadyQueue ready_;
  detail::TimerHeap timers_;
  // Tracing only: when each handle queued while tracing was put on the ready queue (its
  // "scheduled"), kept aside so that handles have no field for it.
  std::unordered_map<const detail::HandleImpl*, double> trace_scheduled_;
  std::size_t timer_cancelled_count_ = 0;
  std::uint64_t next_handle_id_ = 1;
  bool running_ = false;
  bool stopping_ = false;
  std::atomic<bool> closed_{false};  // read by other threads (call_soon_threadsafe, LoopLink)
  bool debug_ = false;
  std::atomic<std::thread::id> thread_id_{};  // the running thread; read by other threads
  ExceptionHandler exception_handler_;
  TaskFactory task_factory_;
  std::shared_ptr<Tracer> tracer_;
  std::unique_ptr<Executor> default_executor_;
  // Replaced default executors, shut down without waiting; joined by ~EventLoop (destroying
  // one would wait for its work on the loop's thread, which that work may need).
  std::vector<std::unique_ptr<Executor>> retired_executors_;
  std::unordered_map<detail::TaskStateBase*, std::shared_ptr<detail::TaskStateBase>> tasks_;
  std::mutex asyncgens_mutex_;  // a generator may be dropped, and unregistered, on any thread
  std::vector<detail::AsyncGenStateBase*> asyncgens_;
  bool asyncgens_shutdown_called_ = false;
  detail::ContextData empty_context_;  // where handles without a captured context run
  std::shared_ptr<detail::LoopLink> link_;

  // ---- Core: call_soon_threadsafe's queue (filled by any thread, drained on the loop's) -----
  void drain_threadsafe();
  std::mutex threadsafe_mutex_;
  std::vector<detail::HandleRef> threadsafe_queue_;
  std::atomic<bool> threadsafe_pending_{false};  // the queue is not empty

  // ---- Watching file descriptors, UNIX signals (libloop/src/io/) --------------------------
  // Declared last so that they are destroyed first, while io_ still exists.
  Handle add_fd_watch(int fd, int direction, detail::HandleRef callback, const void* owner);
  void close_fd_watchers();
  void add_signal_handle(int sig, detail::HandleRef callback);
  void close_signal_handlers();
  std::shared_ptr<detail::FdWatchers> fd_watchers_;
  std::vector<const BaseTransport*> fd_transports_;  // indexed by fd: set_fd_transport
  std::shared_ptr<detail::SignalHandlers> signal_handlers_;
};

// ---- The event loop of the current thread (asyncio.get_event_loop and friends) ------------
/// The loop running in this thread; throws std::runtime_error("no running event loop").
EventLoop& get_running_loop();
/// The running loop, else the one set for this thread; the main thread gets one made on
/// first use; elsewhere throws std::runtime_error.
EventLoop& get_event_loop();
/// Makes `loop` this thread's loop (nullptr clears it). Does not take ownership.
void set_event_loop(EventLoop* loop);
/// A new loop (on the steady clock, debug mode from LOOP_DEBUG).
std::unique_ptr<EventLoop> new_event_loop();

namespace detail {
EventLoop* running_loop() noexcept;
void set_running_loop(EventLoop* loop) noexcept;

// Another thread's way into a loop that may be gone by the time it calls.
struct LoopLink {
  std::mutex mutex;
  EventLoop* loop = nullptr;  // null once the loop's destructor started: no more posts
  /// False once the loop is destroyed: futures that outlive it stop reporting to it.
  std::atomic<bool> alive{true};
  /// call_soon_threadsafe if the loop still exists and is open; false otherwise.
  bool post(HandleRef handle);
};
}  // namespace detail

// ---- Template definitions ----------------------------------------------------------------

template <class F, class... Args>
Handle EventLoop::call_soon(F&& callback, Args&&... args) {
  check_closed();
  if (debug_) check_thread();
  auto h = detail::make_handle(std::forward<F>(callback), std::forward<Args>(args)...);
  h->context = detail::capture_context();
  return schedule(std::move(h), "call_soon");
}

template <class F, class... Args>
Handle EventLoop::call_soon_in(const Context& ctx, F&& callback, Args&&... args) {
  check_closed();
  if (debug_) check_thread();
  auto h = detail::make_handle(std::forward<F>(callback), std::forward<Args>(args)...);
  h->context = ctx.data();
  return schedule(std::move(h), "call_soon");
}

template <class F, class... Args>
Handle EventLoop::call_soon_threadsafe(F&& callback, Args&&... args) {
  return call_soon_threadsafe_with(detail::capture_context(), std::forward<F>(callback),
                                   std::forward<Args>(args)...);
}

template <class F, class... Args>
Handle EventLoop::call_soon_threadsafe_in(const Context& ctx, F&& callback, Args&&... args) {
  return call_soon_threadsafe_with(ctx.data(), std::forward<F>(callback),
                                   std::forward<Args>(args)...);
}

template <class F, class... Args>
Handle EventLoop::call_soon_threadsafe_with(detail::ContextRef ctx, F&& callback, Args&&... args) {
  check_closed();
  auto h = detail::make_handle(std::forward<F>(callback), std::forward<Args>(args)...);
  h->context = std::move(ctx);
  h->kind = detail::HandleKind::threadsafe;
  if (debug_) h->set_origin(detail::capture_origin());
  Handle result(h);
  schedule_threadsafe(std::move(h));
  return result;
}

template <class F, class... Args>
TimerHandle EventLoop::call_later(double delay, F&& callback, Args&&... args) {
  return call_at(time() + delay, std::forward<F>(callback), std::forward<Args>(args)...);
}

template <class F, class... Args>
TimerHandle EventLoop::call_at(double when, F&& callback, Args&&... args) {
  return call_at_with(detail::capture_context(), when, std::forward<F>(callback),
                      std::forward<Args>(args)...);
}

template <class F, class... Args>
TimerHandle EventLoop::call_later_in(const Context& ctx, double delay, F&& callback,
                                     Args&&... args) {
  return call_at_with(ctx.data(), time() + delay, std::forward<F>(callback),
                      std::forward<Args>(args)...);
}

template <class F, class... Args>
TimerHandle EventLoop::call_at_in(const Context& ctx, double when, F&& callback, Args&&... args) {
  return call_at_with(ctx.data(), when, std::forward<F>(callback), std::forward<Args>(args)...);
}

template <class F, class... Args>
TimerHandle EventLoop::call_at_with(detail::ContextRef ctx, double when, F&& callback,
                                    Args&&... args) {
  check_closed();
  if (debug_) check_thread();
  auto h = detail::make_timer_handle(std::forward<F>(callback), std::forward<Args>(args)...);
  h->context = std::move(ctx);
  return schedule_timer(std::move(h), when);
}

// ---- Watching file descriptors, UNIX signals: the template halves ---------------------------

template <class F, class... Args>
Handle EventLoop::add_reader(int fd, F&& callback, Args&&... args) {
  return watch_fd(fd, 0, nullptr, std::forward<F>(callback), std::forward<Args>(args)...);
}

template <class F, class... Args>
Handle EventLoop::add_writer(int fd, F&& callback, Args&&... args) {
  return watch_fd(fd, 1, nullptr, std::forward<F>(callback), std::forward<Args>(args)...);
}

template <class F, class... Args>
Handle EventLoop::watch_fd(int fd, int direction, const void* owner, F&& callback, Args&&... args) {
  check_closed();
  auto h = detail::make_handle(std::forward<F>(callback), std::forward<Args>(args)...);
  h->context = detail::capture_context();
  h->kind = detail::HandleKind::io;
  return add_fd_watch(fd, direction, std::move(h), owner);
}

template <class F, class... Args>
void EventLoop::add_signal_handler(int sig, F&& callback, Args&&... args) {
  check_closed();
  auto h = detail::make_handle(std::forward<F>(callback), std::forward<Args>(args)...);
  h->context = detail::capture_context();
  h->kind = detail::HandleKind::signal;
  add_signal_handle(sig, std::move(h));
}

}  // namespace loop
