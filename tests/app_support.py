"""Open a page of the dashboard in Streamlit's AppTest, optionally on a given data set."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.intake.dataset import Dataset
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_table
from core.store.datasets import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def open_page(page: str, dataset: Dataset | None = None, query: dict | None = None,
              timeout: float = 120, language: str | None = None) -> AppTest:
    """Run the app, then switch to ``pages/<page>.py``; ``dataset`` becomes the active data set of
    this (signed-out) session, ``query`` the URL's query parameters, ``language`` the interface
    language chosen ("es", "en"; default: the browser's, English in AppTest). Fails on an exception."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if language is not None:
        at.session_state["language"] = language
    if dataset is not None:
        store = MemoryStore()
        store.put(dataset)
        at.session_state["dataset_store"] = store
        at.session_state["active_dataset"] = dataset.name
    at.run()
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(str(ROOT / "pages" / f"{page}.py"))
    at.run()
    assert not at.exception, at.exception
    return at


def paperlike_dataset(name: str = "paperlike") -> Dataset:
    """The reference file tests/data/paperlike_public.csv as an uploaded data set."""
    raw = read_table(ROOT / "tests" / "data" / "paperlike_public.csv")
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                            alliance="alliance", symptoms="symptoms")
    return Dataset(name=name, validated=validate_table(raw, mapping))


def signed_in(username: str, password: str = "demo", *, language: str | None = None,
              timeout: float = 120) -> AppTest:
    """Run the app and sign in on the Account page (``language``: the interface language chosen
    before signing in). Fails on an exception or when the sign-in did not take."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if language is not None:
        at.session_state["language"] = language
    at.run()
    at.switch_page(str(ROOT / "pages" / "account.py"))
    at.run()
    at.text_input(key="sign_in_username").set_value(username)
    at.text_input(key="sign_in_password").set_value(password)
    submit = [b for b in at.button if b.key and b.key.startswith("FormSubmitter:sign_in_form-")]
    submit[0].click().run()
    assert not at.exception, at.exception
    return at


def go(at: AppTest, page: str, query: dict | None = None) -> AppTest:
    """Switch a running app to ``pages/<page>.py`` (``query``: the URL's query parameters)."""
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(str(ROOT / "pages" / f"{page}.py"))
    at.run()
    assert not at.exception, (page, at.exception)
    return at
