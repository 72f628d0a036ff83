"""Errors that reach the user as one plain-language sentence (never a traceback)."""
from core.i18n import _


class InputError(ValueError):
    """The input cannot be analysed; ``str(err)`` says in plain words what to fix.

    The command line turns it into exit code 2 with the message on stderr; the dashboard
    shows it with ``st.error``.
    """


class TooLarge(InputError):
    """A file over a reading limit (:mod:`core.intake.limits`); the command line adds how to raise
    the limit for a CSV file (``--max-rows``)."""


class ModelError(RuntimeError):
    """A model cannot be fitted on this data (e.g. one session per patient); message is plain words."""


def some_names(names, limit: int = 8, width: int = 40) -> str:
    """Names for a message, kept short: at most ``limit`` names of at most ``width`` characters.

    >>> some_names(["patient", "session", "oq"])
    'patient, session, oq'
    >>> some_names([f"oq_s{i}" for i in range(1, 10001)], limit=3)
    'oq_s1, oq_s2, oq_s3 … (10,000 in all)'
    """
    names = [str(n) for n in names]
    shown = [n if len(n) <= width else n[: width - 1] + "…" for n in names[:limit]]
    text = ", ".join(shown)
    if len(names) > limit:
        text += _(" … ({n:,} in all)").format(n=len(names))
    return text
