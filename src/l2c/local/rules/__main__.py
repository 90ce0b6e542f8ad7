"""``python -m l2c.local.rules [--write FILE]``: the AWS rules as a markdown table: ``l2c rules``."""

import sys

from l2c.cli import app

app(["rules", *sys.argv[1:]], prog_name="python -m l2c.local.rules")
