"""The failures a stage expects, and reports in one line without a traceback.

Every stage's entry point (``workflow_scripts.stage``) catches ``StageError``
and exits 1 with its message, which names the plate, file or config key;
anything else is a bug and keeps its traceback in the job's log.
"""


class StageError(Exception):
    """An expected failure: bad input, or a resource that stayed unreachable."""


class InputError(StageError, ValueError):
    """Input that cannot be used: a malformed table, an unreadable plate, a wrong key."""
