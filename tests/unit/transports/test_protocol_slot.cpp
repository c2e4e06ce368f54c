// ProtocolSlot: how every transport holds and calls its protocol, so that set_protocol()
// inside one of the protocol's own callbacks never destroys it while it runs.
#include <algorithm>
#include <catch2/catch.hpp>
#include <loop/protocol_slot.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Proto {
  std::vector<std::string>* log;
  std::string name;
  Proto(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) {}
  ~Proto() { log->push_back(name + " destroyed"); }
};

using Slot = loop::detail::ProtocolSlot<Proto>;

}  // namespace

TEST_CASE("ProtocolSlot: outside a call, set() releases the old protocol at once") {
  std::vector<std::string> log;
  Slot slot(std::make_shared<Proto>(&log, "a"));
  slot.set(std::make_shared<Proto>(&log, "b"));
  CHECK(log == std::vector<std::string>{"a destroyed"});
  CHECK(slot.get()->name == "b");
  slot.reset();
  CHECK(log == std::vector<std::string>{"a destroyed", "b destroyed"});
  CHECK(!slot);
}

TEST_CASE("ProtocolSlot: a protocol replaced inside its call lives until the outermost returns") {
  std::vector<std::string> log;
  Slot slot(std::make_shared<Proto>(&log, "a"));
  slot.call([&](Proto& a) {
    slot.call([&](Proto& inner) {
      CHECK(&inner == &a);
      slot.set(std::make_shared<Proto>(&log, "b"));
      log.push_back("inner returns, running " + inner.name);
    });
    CHECK(slot.get()->name == "b");
    slot.set(std::make_shared<Proto>(&log, "c"));  // b is parked too
    log.push_back("outer returns, running " + a.name);
  });
  REQUIRE(log.size() == 4);
  CHECK(log[0] == "inner returns, running a");
  CHECK(log[1] == "outer returns, running a");
  // Both parked ones go when the outer call returns (in the standard library's order).
  CHECK(std::is_permutation(log.begin() + 2, log.end(),
                            std::vector<std::string>{"a destroyed", "b destroyed"}.begin()));
  CHECK(slot.get()->name == "c");
  CHECK(slot.shared().use_count() == 1);  // no reference left behind by the calls
}

TEST_CASE("ProtocolSlot: call() returns the protocol's answer; with none it throws") {
  std::vector<std::string> log;
  Slot slot(std::make_shared<Proto>(&log, "a"));
  CHECK(slot.call([](Proto& p) { return p.name + "!"; }) == "a!");
  slot.set(nullptr);
  CHECK_THROWS_WITH(slot.call([](Proto&) {}), "the transport has no protocol");
  bool ran = false;
  slot.call_if_set([&](Proto&) { ran = true; });
  CHECK_FALSE(ran);
  // A throwing call still ends its scope: a later set() releases at once.
  slot.set(std::make_shared<Proto>(&log, "b"));
  CHECK_THROWS_AS(slot.call([](Proto&) -> int { throw std::logic_error("x"); }), std::logic_error);
  slot.set(std::make_shared<Proto>(&log, "c"));
  CHECK(log == std::vector<std::string>{"a destroyed", "b destroyed"});
}

TEST_CASE("ProtocolSlot: take() during a call keeps the protocol until the call returns") {
  std::vector<std::string> log;
  Slot slot(std::make_shared<Proto>(&log, "a"));
  slot.call([&](Proto& a) {
    { auto taken = slot.take(); }  // the taker lets go at once
    log.push_back("still running " + a.name);
  });
  CHECK(log == std::vector<std::string>{"still running a", "a destroyed"});
  CHECK(!slot);
}

TEST_CASE("ProtocolSlot: a parked protocol may own the transport that holds the slot") {
  // The protocol replaced holds the last reference to its transport; releasing it after the
  // call destroys the transport, slot included. The slot must not be touched after that
  // (AddressSanitizer checks it).
  struct Transport;
  struct Owning {
    std::shared_ptr<Transport> transport;
  };
  struct Transport {
    loop::detail::ProtocolSlot<Owning> slot;
    bool* destroyed;
    explicit Transport(bool* d) : destroyed(d) {}
    ~Transport() { *destroyed = true; }
  };
  bool destroyed = false;
  auto t = std::make_shared<Transport>(&destroyed);
  auto* raw = t.get();
  raw->slot.set(std::make_shared<Owning>(Owning{std::move(t)}));
  raw->slot.call([&](Owning&) { raw->slot.set(nullptr); });
  CHECK(destroyed);
}
