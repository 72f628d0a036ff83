"""What the clinic database refuses, as exceptions whose ``str()`` is one plain sentence."""
from __future__ import annotations

from core.i18n import N_, _

#: Marked for translation; translated where raised (``_(CONFLICT_MESSAGE)``).
CONFLICT_MESSAGE = N_("Someone else changed this data set since your preview; preview again.")
BUSY_MESSAGE = N_("The clinic database is busy with another change (for example another upload); "
                  "try again in a moment.")


class AccessDenied(PermissionError):
    """The signed-in user may not do this; ``str(err)`` says why in plain words."""


class UploadConflict(RuntimeError):
    """The upload was not stored (another upload got there first, or the database was busy)."""


class StoreBusy(RuntimeError):
    """A write waited too long for another one to finish; nothing was changed."""


class StoreUnwritable(RuntimeError):
    """The database cannot be written (its disk is full, or it is read-only); nothing was changed.
    ``str(err)`` is one plain sentence (:func:`core.store.engine.unwritable_message`)."""


class NoSuchDataset(LookupError):
    """No data set of that name among those the user may see."""

    def __str__(self) -> str:  # LookupError would show the repr of the message
        return str(self.args[0]) if self.args else _("No such data set.")


class NoSuchPatient(LookupError):
    """No patient of that ID among those the user may see (the same whether it exists or not)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else _("No such patient.")

