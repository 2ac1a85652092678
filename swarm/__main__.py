"""``python -m swarm COMMAND ARGS...``: the same dispatcher as the ``molink`` command (swarm/cli.py)."""

import sys

from swarm.cli import main

sys.exit(main(prog="python -m swarm"))
