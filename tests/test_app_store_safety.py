"""The dashboard and the clinic database when something goes wrong (issue 25), in Streamlit's
AppTest: the HTML report's export is logged once the report was built, never for a download that
failed; a read-only database gives one sentence on the sign-in page, not Streamlit's error box."""
from __future__ import annotations

import pytest
import streamlit as st

from core.store import ClinicStore, dashboard_url
from tests.app_support import go, signed_in

pytestmark = pytest.mark.usefixtures("fresh_clinic")


def report_exports() -> list[str]:
    store = ClinicStore(dashboard_url(), bcrypt_rounds=4)
    try:
        log = store.audit_log(store.authenticate("demo-supervisor", "demo"), limit=10_000)
    finally:
        store.close()
    return [d for a, d in zip(log["action"], log["detail"]) if a == "export" and d.endswith("HTML report")]


def test_the_html_report_export_is_logged_once_it_was_built(monkeypatch):
    import core.reporting.html_report as html_report

    buttons = {}
    real = st.download_button

    def spy(label, data, *args, **kwargs):
        buttons[kwargs.get("key")] = data
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    real_build = html_report.build_html_report

    def broken(*args, **kwargs):
        raise MemoryError("the report could not be built")

    monkeypatch.setattr(html_report, "build_html_report", broken)
    at = go(signed_in("demo-supervisor"), "models")
    with pytest.raises(MemoryError):
        buttons["report_html"]()  # what the server runs when the button is clicked: the download fails
    assert report_exports() == []
    monkeypatch.setattr(html_report, "build_html_report", real_build)
    at.run()
    html = buttons["report_html"]()
    assert "<html" in (html.decode() if isinstance(html, bytes) else html)
    assert report_exports() == ["Demo clinic: HTML report"]


def test_a_read_only_database_is_one_sentence_on_the_sign_in_page(fresh_clinic, monkeypatch):
    store = ClinicStore(f"sqlite:///{fresh_clinic / 'clinic.db'}", bcrypt_rounds=4)
    store.init_clinic()
    store.create_user(None, "head", "a long supervisor password", "supervisor")
    store.close()
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", f"sqlite:///file:{fresh_clinic / 'clinic.db'}?mode=ro&uri=true")
    at = signed_in("head", "a long supervisor password")  # fails on an exception element
    assert [e.value for e in at.error] == [
        "The clinic database could not be written: it is read-only (its file, folder or server does not accept "
        "changes). Nothing was changed; ask the administrator to make it writable and try again."]
