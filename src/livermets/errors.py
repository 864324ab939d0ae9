"""Exceptions shared by every layer.

`InputError` is the one exception for bad user input (a missing file, an unreadable image,
a manifest row that does not validate). Its message says what is wrong and what to do; the
CLI prints it as one line on stderr and exits with code 2. It subclasses `ValueError`, so
library users can catch either.
"""


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix, on one line."""
