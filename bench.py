#!/usr/bin/env python
"""upbench command line. ``python bench.py`` alone runs the quick default sweep."""
import signal
import sys


def _terminated_while_importing(signum: int, frame: object) -> None:
    print("bench.py: terminated", file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    # importing torch takes a second or two: a Ctrl-C or SIGTERM then is the one line any command's is
    signal.signal(signal.SIGTERM, _terminated_while_importing)
    try:
        from upbench.commands import main
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    sys.exit(main(sys.argv[1:]))
