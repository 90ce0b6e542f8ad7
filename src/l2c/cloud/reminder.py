"""A notebook that stops half-way must still say how to stop the bill.

Jupyter's "Run All" stops at the first failing cell, so a notebook's clean-up cell at the end
never runs after a failed check, an AWS error or an interrupted wait, while the endpoint goes
on billing. ``remind_to_destroy`` makes every failing cell from then on end with the way out:
the clean-up call and the equivalent command. The cell still fails as before (the error and
its traceback are shown, and a test runner such as nbval still sees the failure).
"""

from __future__ import annotations

from l2c.cloud import sagemaker
from l2c.cloud.session import CloudSession


def reminder(name: str, session: CloudSession) -> str:
    if session.is_local:
        where, command = "in the local cloud", f"l2c destroy {name}"
    else:
        where, command = f"in AWS ({session.region})", f"l2c destroy {name} --aws --region {session.region}"
    billing = "" if session.is_local else f"; endpoint {sagemaker.endpoint_name(name)} bills by the hour until then"
    return (
        f"Stack {name} may still be deployed {where}{billing}. Clean up: run the last cell, "
        f'teardown.destroy("{name}", session=...), or `{command}` in a terminal.'
    )


def remind_to_destroy(name: str, session: CloudSession) -> bool:
    """From now on, any cell that fails (Ctrl-C / interrupt included) ends with how to clean up.

    Returns False outside IPython (a script shows its own traceback and exits)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    text = reminder(name, session)

    def show_then_remind(shell, etype, value, tb, tb_offset=None):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        print(f"\n>>> {text}")
        return None

    shell.set_custom_exc((Exception, KeyboardInterrupt), show_then_remind)
    return True
