"""The one exception type users see: a single line saying what is wrong and where."""


class UserError(Exception):
    """Bad input (file, key, shape): reported as one line, non-zero exit, no traceback."""
