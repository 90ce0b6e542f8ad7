"""``python -m l2c.local``: the local cloud alone, in the foreground: ``l2c cloud`` (the test session starts it so)."""

import sys

from l2c.cli import app

app(["cloud", *sys.argv[1:]], prog_name="python -m l2c.local")
