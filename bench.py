#!/usr/bin/env python
"""upbench command line. ``python bench.py`` alone runs the quick default sweep."""
import sys

if __name__ == "__main__":
    try:  # importing torch takes a second or two: a Ctrl-C then is the one line any command's is
        from upbench.commands import main
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(sys.argv[1:]))
