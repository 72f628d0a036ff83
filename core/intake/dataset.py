"""A validated data set with a name for people: what every page and report works on.

:class:`Dataset` is the end of the intake stage (file → validated table); the statistics, the
clinical indices and the presentation read ``dataset.data``. Where data sets are kept (in memory
for one browser session, or in the clinic database) is :mod:`core.store.datasets`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from core.intake.validation import ValidatedData


@dataclass(frozen=True)
class Dataset:
    """A validated data set with a name for people and a flag for demo data."""

    name: str
    validated: ValidatedData
    is_demo: bool = False
    instruments: tuple[tuple[str, str], ...] = ()  # (measure, instrument id), e.g. ("symptoms", "oq45")
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", data_fingerprint(self.validated.data))

    @property
    def data(self):
        return self.validated.data

    def instrument_for(self, measure: str) -> str | None:
        """Id of the instrument that scores ``measure`` (e.g. ``"oq45"``), if known."""
        return dict(self.instruments).get(measure)


def data_fingerprint(data) -> str:
    """A hash of a table's values and columns: the cache key of everything computed from it."""
    import pandas as pd

    digest = hashlib.sha1(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    digest.update("|".join(map(str, data.columns)).encode())
    return digest.hexdigest()
