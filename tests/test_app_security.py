"""The dashboard under attack, in Streamlit's AppTest: hostile names rendered as text on every page,
researchers who see only the allow-list, a deactivated user's open page, sign-out, demo accounts only
in the demo database, sign-in landing on the clinic's own data, and a scan of the pages for
data-derived text that reaches markdown unescaped."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.demo import demo_clinic
from core.intake.dataset import Dataset
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_csv_bytes
from core.intake.validation import validate_table
from core.store import ClinicStore, dashboard_url
from tests.app_support import go, open_page as open_signed_out, signed_in

pytestmark = pytest.mark.usefixtures("fresh_clinic")

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
HOST = "http://127.0.0.1:9"
HOSTILE_DATASET = f"![d]({HOST}/d.png) **bold** :red[red]"
HOSTILE_THERAPIST = f"![t]({HOST}/t.png)"
HOSTILE_PATIENT = f"![p]({HOST}/p.png)"
HOSTILE_COLUMN = f"![c]({HOST}/c.png)"


def validated_from(frame: pd.DataFrame, **roles):
    raw = read_csv_bytes(frame.to_csv(index=False).encode("utf-8"), source="upload.csv")
    mapping = ColumnMapping(patient="patient", session="session", therapist="therapist", alliance="alliance",
                            symptoms="symptoms", **roles)
    return validate_table(raw, mapping)


def hostile_dataset() -> Dataset:
    data = demo_clinic(n_patients=24, n_sessions=6)
    data.loc[data["patient"] == data["patient"].iloc[0], "patient"] = HOSTILE_PATIENT
    data.loc[data["therapist"] == data["therapist"].iloc[0], "therapist"] = HOSTILE_THERAPIST
    data[HOSTILE_COLUMN] = (data.groupby("patient").ngroup() % 7).astype(float)
    return Dataset(name=HOSTILE_DATASET, validated=validated_from(data))


def markdown_sources(at: AppTest) -> list[str]:
    """The markdown source of every element Streamlit renders as markdown."""
    out = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "header", "subheader"):
        out += [str(e.value) for e in at.get(kind)]
    out += [f"{m.label} {m.value}" for m in at.metric]
    for kind in ("selectbox", "multiselect", "radio", "checkbox", "button", "text_input", "number_input"):
        out += [str(getattr(w, "label", "")) for w in at.get(kind)]
    return out


def live(markdown: str) -> str:
    """What markdown would act on: the source without its backslash-escaped characters and code spans."""
    return re.sub(r"(`+).+?\1", "", re.sub(r"\\.", "", markdown))


def assert_nothing_interpreted(at: AppTest, page: str) -> None:
    for source in markdown_sources(at):
        text = live(source)
        for attack in ("![", ":red[", "**bold**"):
            assert attack not in text, (page, source)


@pytest.mark.slow
def test_hostile_names_show_as_text_on_every_page():
    ds = hostile_dataset()
    for page in ("home", "overview", "patient", "models", "dynamics", "upload"):
        at = open_signed_out(page, ds, query={"patient": HOSTILE_PATIENT} if page == "patient" else None)
        if page == "models":
            at.multiselect(key="mb_covariates").select(HOSTILE_COLUMN).run()
            assert not at.exception, at.exception
            assert any(HOSTILE_COLUMN.replace("[", "\\[").replace("]", "\\]") in m.value for m in at.markdown)
        if page == "patient":
            assert at.selectbox(key="patient_id").value == HOSTILE_PATIENT
            assert any(m.label == "Therapist" for m in at.metric)
        assert_nothing_interpreted(at, page)
    home = open_signed_out("home", ds)
    assert any("d\\]" in m.value for m in home.markdown)              # the name is there, escaped


def test_a_page_scan_finds_no_unescaped_data_in_markdown():
    """Every f-string value inside a Streamlit text call (markdown, captions, alerts, metrics, widget
    labels) goes through ui.text.md / code, is a formatted number, or is one of the few expressions
    listed here that hold no data (add to the list only what can never come from a file)."""
    text_calls = {"markdown", "write", "caption", "info", "warning", "error", "success", "title", "header",
                  "subheader", "metric", "toast", "progress", "expander", "button", "checkbox", "toggle", "radio",
                  "selectbox", "multiselect", "text_input", "number_input", "slider", "download_button",
                  "form_submit_button", "link_button", "popover", "status"}
    no_data = {"user.role.value", "demo", "ended", "DIRECTION_TEXT.get(direction, direction)", "key", "m.key",
               "n_pages", "PANELS_PER_PAGE", "measure", "measure.capitalize()", "role_labels[role]", "how",
               "result.scoring", "d.name", "refs", "'matching ' if query.strip() else ''", "i + 1",
               "len(labels)", "result.k", "result.k - 1", "len(validated.excluded)", "drop['n_dropout']",
               "len(item_cols)", "result.n_alpha['total']",
               "', '.join((str(s) for s in sorted({s for v in layout.columns.values() for s in v})))"}
    found = []
    for path in sorted([*ROOT.joinpath("pages").glob("*.py"), *ROOT.joinpath("ui").glob("*.py"), ROOT / "app.py"]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in text_calls):
                continue
            args = [*node.args[:2], *[k.value for k in node.keywords if k.arg in ("label", "text", "value", "body", "help")]]
            for arg in args:
                for sub in ast.walk(arg):
                    if not isinstance(sub, ast.FormattedValue) or sub.format_spec is not None:
                        continue
                    v = sub.value
                    if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in ("md", "code"):
                        continue
                    if ast.unparse(v) not in no_data:
                        found.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {{{ast.unparse(v)}}}")
    assert not found, "data-derived text reaches markdown unescaped; wrap it in ui.text.md():\n" + "\n".join(found)


NAMES = [f"Paciente Nombre{i} Apellido{i}" for i in range(30)]
ADDRESSES = [f"Avenida Libertad {i}, Sevilla" for i in range(30)]


def clinic_with_identifiers(store: ClinicStore) -> None:
    """A supervisor stores a file with names, addresses, record numbers, phones and a study column of names."""
    data = demo_clinic(n_patients=30, n_sessions=6)
    index = data.groupby("patient").ngroup()
    data["nombre"] = index.map(lambda i: NAMES[i])
    data["direccion"] = index.map(lambda i: ADDRESSES[i])
    data["nhc"] = 8_800_000 + index
    data["phone"] = 699_000_000 + index
    data["study"] = index.map(lambda i: ["Estudio Doctora Alvarez", "Estudio Doctor Benitez"][i % 2])
    sup = store.authenticate("demo-supervisor", "demo")
    store.apply_upload(sup, store.preview_upload(sup, "Real clinic", validated_from(data)))


@pytest.mark.slow
def test_researcher_pages_show_only_the_allow_list():
    signed_in("demo-supervisor")                                      # the demo database exists now
    store = ClinicStore(dashboard_url(), bcrypt_rounds=4)
    clinic_with_identifiers(store)
    at = signed_in("demo-researcher")
    assert at.session_state["active_dataset"] == "Real clinic"        # lands on the clinic's own data
    forbidden = [*NAMES, *ADDRESSES, "Nombre", "Avenida", "Sevilla", "Alvarez", "Benitez", "8800", "6990",
                 "nombre", "direccion", "nhc", "phone"]
    for page in ("home", "overview", "patient", "models", "dynamics"):
        go(at, page)
        parts = markdown_sources(at) + [df.value.to_csv() for df in at.dataframe]
        for w in list(at.selectbox) + list(at.multiselect):
            parts += [str(o) for o in w.options]
        parts += [json.dumps(json.loads(c.proto.spec)) for c in at.get("plotly_chart")]
        everything = "\n".join(parts)
        # a number of the identifiers as a whole number: "8800" also occurs inside chart floats (0.88003…)
        leaked = [v for v in forbidden if (re.search(rf"(?<![\d.]){v}(?!\d)", everything) if v.isdigit()
                                           else v in everything)]
        assert not leaked, (page, leaked[:5])
        if page == "dynamics":
            stage1 = at.dataframe[0].value
            assert stage1["study"].str.fullmatch(r"S-[0-9a-f]{12}").all() and stage1["study"].nunique() == 2
        if page == "models":
            assert at.multiselect(key="mb_covariates").options == ["study"]  # nothing else shared


def test_a_deactivated_users_open_page_signs_out_without_a_traceback():
    at = signed_in("demo-therapist-ana")
    go(at, "overview")
    store = ClinicStore(dashboard_url(), bcrypt_rounds=4)
    store.deactivate(store.authenticate("demo-supervisor", "demo"), "demo-therapist-ana")
    at.run()
    assert not at.exception, at.exception
    assert "signed_in_user" not in at.session_state
    go(at, "account")
    assert any("signed out" in i.value for i in at.info)


def test_sign_out_ends_the_session_on_the_server():
    at = signed_in("demo-supervisor")
    session_id = at.session_state["signed_in_session"]
    store = ClinicStore(dashboard_url(), bcrypt_rounds=4)
    assert store.session_user(session_id=session_id).username == "demo-supervisor"
    go(at, "account")
    at.button(key="sign_out").click().run()
    assert store.session_user(session_id=session_id) is None
    assert "signed_in_user" not in at.session_state


def test_sign_out_in_another_tab_signs_this_tab_out():
    first, second = signed_in("demo-supervisor"), signed_in("demo-supervisor")
    go(second, "account")
    second.button(key="sign_out").click().run()
    store = ClinicStore(dashboard_url(), bcrypt_rounds=4)
    store.end_session(first.session_state["signed_in_session"])       # what the cookie route does
    go(first, "overview")
    assert "signed_in_user" not in first.session_state


def test_no_demo_accounts_in_a_configured_database(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", f"sqlite:///{tmp_path / 'server.db'}")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    go(at, "account")
    assert not any("Demo accounts" in e.label for e in at.expander)
    assert "demo" not in " ".join(str(t.value) for t in at.get("table")).lower()
    at.text_input(key="sign_in_username").set_value("demo-supervisor")
    at.text_input(key="sign_in_password").set_value("demo")
    at.button(key="FormSubmitter:sign_in_form-Sign in").click().run()
    assert "signed_in_user" not in at.session_state and any("not right" in e.value for e in at.error)


def test_the_demo_database_lists_its_demo_accounts():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    go(at, "account")
    assert any("Demo accounts" in e.label for e in at.expander)


def test_table_downloads_and_tracebacks_are_off_in_the_configuration():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["disableDataExport"] is True              # no "Download as CSV" on tables
    assert config["client"]["showErrorDetails"] == "none"
    assert set(config["server"]["allowedHosts"]) == {"localhost", "127.0.0.1", "::1"}
    assert config["browser"]["gatherUsageStats"] is False
