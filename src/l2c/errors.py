"""The one exception base of l2c.

Every error meant for a person (a bad file, a refused artifact, a cloud
call that failed, an installed library that drifted from its pin) derives
from `L2CError`, so the CLI has a single place that turns it into one
`error: ...` line and exit code 1 instead of a traceback.
"""


class L2CError(Exception):
    """The one error the CLI turns into one line: its message is what the user reads."""
