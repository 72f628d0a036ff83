"""Where the dashboard's data sets are kept: in memory for one browser session, or in the clinic database.

Pages never hold data themselves: they ask a :class:`DatasetStore` for the active data set. The
in-memory store below keeps uploads for one browser session; a persistent (database) store
implements the same three methods, so pages do not change when it replaces this one.
"""
from __future__ import annotations

from typing import Protocol

from core.demo import DEMO_LABEL, demo_dataset
from core.intake.dataset import Dataset
from core.store.errors import NoSuchDataset


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


class ClinicDatasetStore:
    """The data sets a signed-in user may see in the clinic database (:class:`core.store.ClinicStore`).

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
