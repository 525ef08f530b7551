"""The local stack's one error: a part of it did not start or stopped working."""


class StackFailure(RuntimeError):
    """A part of the local stack stopped working (a function host exited, a resource is missing)."""
