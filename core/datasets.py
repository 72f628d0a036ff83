"""Data sets the dashboard works on, and where they are kept.

Pages never hold data themselves: they ask a :class:`DatasetStore` for the active data set. The
in-memory store below keeps uploads for one browser session; a persistent (database) store
implements the same three methods, so pages do not change when it replaces this one.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from core.demo import DEMO_LABEL, DEMO_SOURCE, demo_csv_bytes
from core.mapping import ColumnMapping
from core.reading import read_csv_bytes
from core.storage import NoSuchDataset
from core.validation import ValidatedData, validate_table

#: Valid ranges of the demo's measures: ANS mean item score and OQ-45.2 total.
DEMO_RANGES = {"alliance": (1.0, 7.0), "symptoms": (0.0, 180.0)}


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


class DatasetStore(Protocol):
    def names(self) -> list[str]: ...
    def get(self, name: str) -> Dataset: ...
    def put(self, dataset: Dataset) -> None: ...


class MemoryStore:
    """Data sets kept in memory (one browser session); the demo clinic is always there."""

    def __init__(self) -> None:
        self._items: dict[str, Dataset] = {}

    def names(self) -> list[str]:
        return [DEMO_LABEL, *[n for n in self._items if n != DEMO_LABEL]]

    def get(self, name: str) -> Dataset:
        if name == DEMO_LABEL:
            return demo_dataset()
        return self._items[name]

    def put(self, dataset: Dataset) -> None:
        self._items[dataset.name] = dataset


@lru_cache(maxsize=1)
def demo_dataset() -> Dataset:
    """The demo clinic, read and validated by the same code as an upload."""
    raw = read_csv_bytes(demo_csv_bytes(), source=DEMO_SOURCE)
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                            alliance="alliance", symptoms="symptoms")
    validated = validate_table(raw, mapping, ranges=DEMO_RANGES)
    return Dataset(name=DEMO_LABEL, validated=validated, is_demo=True,
                   instruments=(("alliance", "ans"), ("symptoms", "oq45")))


class ClinicDatasetStore:
    """The data sets a signed-in user may see in the clinic database (:mod:`core.storage`).

    Every read goes through ``ClinicStore.load(user, …)``, which applies the user's role in the
    query: pages cannot get more than the role allows. Loads are kept per data set and version, so
    a rerun of a page does not read the database again unless an upload changed the data set.
    """

    def __init__(self, clinic, user) -> None:
        self.clinic = clinic
        self.user = user
        self._loaded: dict[str, tuple[int, Dataset]] = {}

    def names(self) -> list[str]:
        return self.clinic.dataset_names(self.user)

    def get(self, name: str) -> Dataset:
        try:
            version = self.clinic.dataset_version(self.user, name)  # also: may this user see it?
        except NoSuchDataset:
            raise KeyError(name) from None
        cached = self._loaded.get(name)
        if cached and cached[0] == version:
            return cached[1]
        dataset = self.clinic.load_dataset(self.user, name)  # demo flag and instruments as stored
        self._loaded[name] = (version, dataset)
        return dataset

    def put(self, dataset: Dataset) -> None:
        raise PermissionError("Stored data sets change only through an upload preview (ClinicStore.apply_upload).")
