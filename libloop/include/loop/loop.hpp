// The whole public API of libloop: #include <loop/loop.hpp>.
#pragma once

#include "loop/clock.hpp"
#include "loop/context.hpp"
#include "loop/errors.hpp"
#include "loop/event_loop.hpp"
#include "loop/exception_context.hpp"
#include "loop/executor.hpp"
#include "loop/handle.hpp"
#include "loop/trace.hpp"
#include "loop/future.hpp"
#include "loop/coroutine.hpp"
#include "loop/task.hpp"
#include "loop/tasks.hpp"
#include "loop/asyncgen.hpp"
#include "loop/executor_impl.hpp"
