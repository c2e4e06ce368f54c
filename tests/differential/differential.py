"""The asyncio half of the differential scenarios (scenario.hpp has the C++ half).

    from differential import scenario, say, main

    @scenario
    def call_soon_is_fifo():
        loop = asyncio.new_event_loop()
        ...

    if __name__ == "__main__":
        main()

`script --list` prints the scenario names, `script NAME` runs one.
"""
import sys

_scenarios = {}


def scenario(fn):
    _scenarios[fn.__name__] = fn
    return fn


def say(*args):
    print(*args, flush=True)


def main():
    sys.exit(_run())


def _run():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        for name in sorted(_scenarios):
            print(name)
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in _scenarios:
        print(f"usage: {sys.argv[0]} --list | SCENARIO", file=sys.stderr)
        return 2
    _scenarios[sys.argv[1]]()
    return 0
