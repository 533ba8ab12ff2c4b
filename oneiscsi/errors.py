"""The errors one-iscsi reports. The CLI prints any of them as one line."""


class OneIscsiError(Exception):
    """Something failed: exit status 1."""

    exit_code = 1


class InvalidInput(OneIscsiError, ValueError):
    """A name, number or option that is refused before anything runs: exit status 2."""

    exit_code = 2


class NotFound(OneIscsiError):
    """The thing named does not exist where it was looked for."""
