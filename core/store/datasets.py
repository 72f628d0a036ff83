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
    def is_demo(self, name: str) -> bool: ...
    def datasets_with_patient(self, patient: str) -> list[str]: ...
    def version_of(self, dataset: Dataset) -> int | None: ...


def first_own(store: DatasetStore, names: list[str]) -> str | None:
    """The data set a session opens on when none was chosen: the first that is not demo data (the
    clinic's own), else the first; ``None`` when there is none."""
    return next((n for n in names if not store.is_demo(n)), names[0] if names else None)


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

    def is_demo(self, name: str) -> bool:
        return name == DEMO_LABEL or (name in self._items and self._items[name].is_demo)

    def datasets_with_patient(self, patient: str) -> list[str]:
        """The data sets of this session that hold the patient ``patient``."""
        patient = str(patient)
        return [n for n in self.names() if (self.get(n).data["patient"].astype(str) == patient).any()]

    def version_of(self, dataset: Dataset) -> int | None:
        """None: a data set of this session is not stored in the clinic database."""
        return None


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

    def version_of(self, dataset: Dataset) -> int | None:
        """The database version ``dataset`` was read at (what its results are kept under, e.g. the
        signal's expected course), or None when it is not the data set this store read last."""
        cached = self._loaded.get(dataset.name)
        return cached[0] if cached and cached[1] is dataset else None

    def is_demo(self, name: str) -> bool:
        try:
            return self.clinic.dataset_info(self.user, name).is_demo
        except NoSuchDataset:
            return False

    def datasets_with_patient(self, patient: str) -> list[str]:
        """The data sets in which this user may see the patient (the role's rule, in the query)."""
        return self.clinic.datasets_with_patient(self.user, patient)

    def put(self, dataset: Dataset) -> None:
        raise PermissionError("Stored data sets change only through an upload preview (ClinicStore.apply_upload).")
