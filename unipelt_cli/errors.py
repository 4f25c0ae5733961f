"""User-facing errors: one line naming the problem and the fix, exit code 2, no traceback."""


class UserError(Exception):
    """A mistake the user can fix. The CLI prints `error: <message>` and exits with code 2.

    Write the message as "<what is wrong>: <how to fix it>" on one line.
    """

    exit_code = 2
