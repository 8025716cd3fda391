#!/usr/bin/env python
"""upbench command line. ``python bench.py`` alone runs the quick default sweep."""
import sys

from upbench.commands import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
