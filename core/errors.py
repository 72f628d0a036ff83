"""Errors that reach the user as one plain-language sentence (never a traceback)."""


class InputError(ValueError):
    """The input cannot be analysed; ``str(err)`` says in plain words what to fix.

    The command line turns it into exit code 2 with the message on stderr; the dashboard
    shows it with ``st.error``.
    """


class ModelError(RuntimeError):
    """A model cannot be fitted on this data (e.g. one session per patient); message is plain words."""
