// "Hello World with call_soon()" from the asyncio docs (Base Event Loop, Examples).
//
//   def hello_world(loop):
//       print('Hello World')
//       loop.stop()
//   loop = asyncio.get_event_loop()
//   loop.call_soon(hello_world, loop)
//   try: loop.run_forever()
//   finally: loop.close()
#include <cstdio>
#include <loop/loop.hpp>

void hello_world(loop::EventLoop& loop) {
  std::printf("Hello World\n");
  loop.stop();
}

int main() {
  loop::EventLoop& loop = loop::get_event_loop();

  // Schedule a call to hello_world()
  loop.call_soon(hello_world, std::ref(loop));

  // Blocking call interrupted by loop.stop()
  loop.run_forever();
  loop.close();
}
