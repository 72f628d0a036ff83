"""Issue 24 in Chromium: never the wrong patient, never the demo by surprise, and the clinician pages
after a new user's walk — each item at 1400 and 800 px, in Spanish and English, signed in as the
roles it concerns, on a demo database that also holds a clinic's own data set (*Clínica Norte*,
40 patients ``CL-001`` … ``CL-040``; tests/clinic_support.py).

1. A reload, a new tab and a ``?patient=`` link keep the data set chosen in the sign-in session; a
   link to a patient the active data set does not show says so, shows no chart, and offers the data
   set where the user may see that patient (never another patient).
2. Downloads in the interface language all the way (words, yes/no, the definitions sheet, numbers
   as numbers; no raw floats in the patient CSV).
3. The mean trajectory per therapist: no CI band where fewer than 3 patients contribute, bands
   within the scale, patients per session on hover.
4. Small multiples whose panel titles fit at 800 px.
5. The keyboard at 800 px: the folded sidebar out of the tab order, the skip link, Enter opens the
   focused caseload row.
6. Text that fits: the caseload's key columns and its reasons (full pseudonyms for the researcher),
   the rupture label inside the chart.
7. At 800 px a choice in the sidebar folds it again.
8. Numbers the language's way (Spanish decimal comma), rounded alike in sentences and tables.
9. The RI-CLPM's default sessions are identified on the 40-patient clinic.
10. The *Add user* form forgets the password; the HTML report names its models in the language;
    ``scripts/start.sh --server.port N`` says the address it uses.
"""
from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import time

import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, require_chromium, running_app, wait_healthy
from clinic_support import CLINIC, N_PATIENTS, clinic_frame, seed_clinic
from language_support import english_in

from core.i18n import _, language

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ARTIFACTS / "walk"
LOCALES = {"en": "en-US", "es": "es-AR"}


def t(lang: str, text: str) -> str:
    """``text`` as the dashboard writes it in ``lang`` (the catalogue's translation)."""
    with language(lang):
        return str(_(text))


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("walk")
    seed_clinic(data)
    with running_app(data) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def context(browser, width: int, lang: str):
    """A fresh browser (no cookie) in ``lang`` at ``width`` px."""
    return browser.new_context(viewport={"width": width, "height": 1000}, locale=LOCALES[lang], accept_downloads=True)


def open_as(browser, app: str, width: int, lang: str, user: str | None = None):
    """``(context, page)``: a fresh browser in ``lang`` at ``width`` px, signed in as ``user`` (if any)."""
    ctx = context(browser, width, lang)
    page = ctx.new_page()
    if user is not None:
        sign_in(page, app, user)
    return ctx, page


def idle(page, settle: int = 800) -> None:
    page.wait_for_function("""() => { const a = document.querySelector('[data-testid="stApp"]');
        return a && a.getAttribute('data-test-script-state') === 'notRunning'; }""", timeout=180000)
    page.wait_for_timeout(settle)


def goto(page, url: str, ready: str | None = None) -> None:
    page.goto(url)
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=120000)
    if ready:
        page.locator(ready).first.wait_for(timeout=120000)
    idle(page)


def sign_in(page, url: str, username: str) -> None:
    """Sign in on the Account page (any language) and wait until the session cookie is set."""
    goto(page, url + "/account")
    page.locator('[data-testid="stMain"] input[type="text"]').first.fill(username)
    page.locator('[data-testid="stMain"] input[type="password"]').first.fill("demo")
    page.locator('[data-testid="stFormSubmitButton"] button').first.click()
    deadline = time.time() + 60
    while not any(c["name"] == "alliance_session" for c in page.context.cookies()):
        assert time.time() < deadline, "the sign-in did not set the session cookie"
        page.wait_for_timeout(200)
    idle(page)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def active_dataset(page) -> str:
    return page.get_by_role("combobox", name=re.compile("^(Data set|Conjunto de datos)$")).input_value()


def shown_patient(page) -> str | None:
    box = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"] input')
    return box.first.input_value() if box.count() else None


def charts(page) -> int:
    return page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').count()


def figure(page, title_part: str) -> dict:
    """The data and layout of the Plotly figure whose title holds ``title_part``."""
    return page.evaluate("""(part) => { for (const el of document.querySelectorAll('.js-plotly-plot')) {
        const title = ((el.layout || {}).title || {}).text || '';
        const plain = (v) => (v && v.length !== undefined && typeof v !== 'string') ? Array.from(v, plain) : v;
        if (title.includes(part)) return {data: el._fullData.map(d => ({x: plain(d.x), y: plain(d.y), name: d.name,
            fill: d.fill, customdata: plain(d.customdata), hovertemplate: d.hovertemplate, showlegend: d.showlegend})),
            layout: el._fullLayout ? {yaxis: {range: el._fullLayout.yaxis.range}, title: el.layout.title} : el.layout};
      } return null; }""", title_part)


def pick_dataset(page, name: str) -> None:
    page.get_by_role("combobox", name=re.compile("^(Data set|Conjunto de datos)$")).click()
    page.get_by_role("option", name=name).click()
    idle(page, 1500)


def open_sidebar(page) -> None:
    """Unfold the sidebar at 800 px (it folds itself once the page has loaded; then its button opens it)."""
    if not sidebar_folded(page):
        page.wait_for_timeout(1500)  # the page's own fold on a narrow window may still come
    if not sidebar_folded(page):
        return
    page.locator('[data-testid="stExpandSidebarButton"]').click()
    page.wait_for_function("""() => document.querySelector('[data-testid="stSidebar"]')
        .getAttribute('data-collapsed') === 'false'""", timeout=10000)
    page.wait_for_timeout(400)


def on_the_clinic(page) -> None:
    """Make *Clínica Norte* the active data set through the sidebar when it is not (so that a test of
    another item does not depend on item 1), and leave the sidebar as the width wants it."""
    narrow = page.viewport_size["width"] < 1000
    if narrow:
        open_sidebar(page)
    if active_dataset(page) != CLINIC:
        pick_dataset(page, CLINIC)
    if narrow and not sidebar_folded(page):
        page.locator('[data-testid="stSidebarCollapseButton"] button').click()
        page.wait_for_timeout(600)
    idle(page)


def clinic_overview(browser, app: str, width: int, lang: str, user: str):
    """``(context, page)`` signed in as ``user`` on the clinic overview of *Clínica Norte*."""
    ctx, page = open_as(browser, app, width, lang, user)
    goto(page, app + "/overview", ready=".st-key-caseload canvas")
    on_the_clinic(page)
    return ctx, page


def sidebar_folded(page) -> bool:
    return page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed") == "true"


def the_patient(lang: str, patient: str, dataset: str) -> str:
    return t(lang, "There is no patient “{patient}” among the patients you can see in {dataset}.").format(
        patient=patient, dataset=dataset)


# --------------------------------------------------------------------- 1. the data set and patient links
@pytest.mark.parametrize("user, lang, width", [("demo-supervisor", "en", 1400), ("demo-supervisor", "es", 800),
                                               ("demo-therapist-ana", "es", 1400), ("demo-researcher", "en", 800)])
def test_reload_new_tab_and_link_keep_the_data_set_and_never_show_another_patient(app, browser, user, lang, width):
    frame = clinic_frame()
    ana = sorted(frame.loc[frame["therapist"] == "T01 Ana", "patient"].unique())
    carla = sorted(frame.loc[frame["therapist"] == "T03 Carla", "patient"].unique())
    ctx, page = open_as(browser, app, width, lang, user)
    goto(page, app + "/overview")                     # a full load: a new Streamlit session of the sign-in
    if width < 1000:
        open_sidebar(page)
    assert active_dataset(page) == CLINIC              # the clinic's own data, not the demo
    page.reload()
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=120000)
    idle(page)
    if width < 1000:
        open_sidebar(page)
    assert active_dataset(page) == CLINIC              # a reload keeps it
    tab = ctx.new_page()
    goto(tab, app + "/")
    if width < 1000:
        open_sidebar(tab)
    assert active_dataset(tab) == CLINIC               # so does a new tab

    if user == "demo-researcher":                      # pseudonyms: a real ID is no patient of hers
        goto(tab, app + f"/patient?patient={frame['patient'].iloc[0]}")
        assert the_patient(lang, frame["patient"].iloc[0], CLINIC) in main_text(tab)
        assert charts(tab) == 0 and shown_patient(tab) is None
        tab.get_by_role("button", name=t(lang, "Choose another patient")).click()
        idle(tab, 1500)
        pseudonym = shown_patient(tab)
        assert pseudonym and re.fullmatch(r"P-[0-9a-f]{12}", pseudonym)
        link = ctx.new_page()
        goto(link, app + f"/patient?patient={pseudonym}", ready='[data-testid="stPlotlyChart"]')
        assert shown_patient(link) == pseudonym        # a shared link opens that patient, nobody else
        shot(link, f"link_researcher_{lang}_{width}")
        ctx.close()
        return

    wanted = ana[1] if user == "demo-therapist-ana" else "CL-017"
    link = ctx.new_page()
    goto(link, app + f"/patient?patient={wanted}", ready='[data-testid="stPlotlyChart"]')
    assert shown_patient(link) == wanted               # the link's patient, from the clinic's data
    assert t(lang, "Therapist") in main_text(link)

    # a patient the user may not see, or who does not exist: one sentence, no chart, no other patient
    hidden = carla[0] if user == "demo-therapist-ana" else "CL-999"
    goto(link, app + f"/patient?patient={hidden}")
    assert the_patient(lang, hidden, CLINIC) in main_text(link)
    assert charts(link) == 0 and shown_patient(link) is None
    assert link.get_by_role("button", name=re.compile(re.escape(t(lang, "Open {patient} in {dataset}").split("{")[0]))
                            ).count() == 0          # nothing to switch to
    shot(link, f"link_hidden_{user}_{lang}_{width}")

    # on the demo clinic, a link to a clinic patient offers the data set where the user may see them
    if width < 1000:
        open_sidebar(page)
    demo = t(lang, "Demo clinic")
    pick_dataset(page, demo)
    other = ctx.new_page()
    goto(other, app + f"/patient?patient={wanted}")
    if width < 1000:
        open_sidebar(other)
    assert active_dataset(other) == demo               # the new tab follows the sign-in session's choice
    assert the_patient(lang, wanted, demo) in main_text(other)
    assert charts(other) == 0 and shown_patient(other) is None
    shot(other, f"link_offer_{user}_{lang}_{width}")
    other.get_by_role("button", name=t(lang, "Open {patient} in {dataset}").format(patient=wanted, dataset=CLINIC)).click()
    other.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120000)
    idle(other)
    assert shown_patient(other) == wanted
    ctx.close()


# ------------------------------------------------------------------------------------ 2. downloads
def _download(page, name: str) -> bytes:
    with page.expect_download(timeout=180000) as info:
        page.get_by_role("button", name=name).click()
    return open(info.value.path(), "rb").read()


@pytest.mark.parametrize("lang, width", [("es", 800), ("en", 1400)])
def test_downloads_speak_the_interface_language_all_the_way(app, browser, lang, width):
    import openpyxl

    ctx, page = clinic_overview(browser, app, width, lang, "demo-supervisor")
    words = {k: t(lang, v) for k, v in {"nt": "▲ not on track", "ok": "● on track", "yes": "yes", "no": "no"}.items()}
    english_signal = {"▲ not on track", "◆ at risk", "● on track", "○ unknown"}

    text = _download(page, t(lang, "Caseload (CSV)")).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";" if lang == "es" else ","))
    assert len(rows) == N_PATIENTS
    signals = {r["signal"] for r in rows}
    assert words["nt"] in signals and words["ok"] in signals
    flags = {r["above_cutoff"] for r in rows} | {r["no_reliable_improvement"] for r in rows}
    assert flags == {words["yes"], words["no"]}                     # not True / False
    if lang == "es":
        assert not signals & english_signal
        assert english_in([r["attention"] for r in rows] + [r["status"] for r in rows]) == []

    book = openpyxl.load_workbook(io.BytesIO(_download(page, t(lang, "Caseload (Excel)"))))
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[3]]
    values = {h: [sheet.cell(row=i, column=j + 1).value for i in range(4, 4 + N_PATIENTS)] for j, h in enumerate(header)}
    assert words["nt"] in values[t(lang, "Signal now")]
    assert set(values[t(lang, "Above the cut-off")]) == {words["yes"], words["no"]}
    definitions = book[t(lang, "Thresholds and definitions")]
    pairs = dict(definitions.iter_rows(min_row=2, values_only=True))
    cut = next(c for c in definitions["B"] if c.value == 63.5)
    assert pairs[t(lang, "Clinical cut-off")] == 63.5 and cut.data_type == "n"       # a number, not "63.5"
    assert pairs[t(lang, "Reliable change (points)")] == 14
    if lang == "es":
        assert not set(values[t(lang, "Signal now")]) & english_signal
        status = values[t(lang, "Jacobson–Truax status")]
        assert english_in([str(v) for v in status if v]) == []
        assert english_in([str(v) for row in definitions.iter_rows(values_only=True) for v in row if v]) == []

    # the patient's sessions: numbers rounded as on screen (no 89.60212929246751)
    goto(page, app + "/patient", ready='[data-testid="stPlotlyChart"]')
    text = _download(page, t(lang, "Download this patient's sessions (CSV)")).decode("utf-8-sig")
    assert not re.search(r"\d[.,]\d{3,}", text), text
    assert "True" not in text and "False" not in text
    ctx.close()


# -------------------------------------------------------------------------- 3. therapist trajectories
@pytest.mark.parametrize("lang, width", [("es", 800), ("en", 1400)])
def test_therapist_trajectories_are_honest_at_small_n(app, browser, lang, width):
    ctx, page = clinic_overview(browser, app, width, lang, "demo-supervisor")
    title = t(lang, "Mean {measure} per therapist (95% CI)").split("}")[1]
    page.wait_for_function("(part) => Array.from(document.querySelectorAll('.js-plotly-plot')).some("
                           "el => (((el.layout || {}).title || {}).text || '').includes(part))", arg=title, timeout=120000)
    fig = figure(page, title)
    bands = [d for d in fig["data"] if d.get("fill") == "toself"]
    lines = [d for d in fig["data"] if d.get("fill") != "toself"]
    assert len(bands) == len(lines) == 6
    small = 0
    for band, line in zip(bands, lines):
        ys = [y for y in band["y"] if y is not None]
        assert all(0 <= y <= 180 for y in ys), (line["name"], min(ys, default=None), max(ys, default=None))
        banded = {x for x in band["x"] if x is not None}
        for x, n in zip(line["x"], [float(c[0]) for c in line["customdata"]]):
            assert (x in banded) == (n >= 3), (line["name"], x, n)  # a band exactly where 3 or more patients
            small += n < 3
        template = line["hovertemplate"]
        template = template if isinstance(template, str) else template[0]
        assert t(lang, "session %{x}: mean %{y:.2f}<br>95% CI %{customdata[1]:.2f} to %{customdata[2]:.2f}"
                       "<br>patients: %{customdata[0]}").split("<br>")[-1] in "".join(line["hovertemplate"])
    assert small > 0  # the clinic has sessions with 1 or 2 patients of a therapist: the case of the issue
    low, high = fig["layout"]["yaxis"]["range"]
    assert -20 < low and high < 200  # the axis shows the scale, not a band of −800 to +950
    shot(page, f"therapists_{lang}_{width}")
    ctx.close()


# ------------------------------------------------------------------------------- 4. small multiples
PANEL_TITLES_JS = """() => {
  const plot = Array.from(document.querySelectorAll('.js-plotly-plot')).find(el => (el.data || []).length >= 12 &&
      (el.layout.annotations || []).length >= 12 && el.layout.showlegend === false);
  if (!plot) return null;
  const n = plot.data.length;
  const boxes = Array.from(plot.querySelectorAll('.annotation')).slice(0, n).map(a => {
    const r = a.querySelector('text').getBoundingClientRect(); return {text: a.textContent, l: r.left, r: r.right, t: r.top, b: r.bottom}; });
  const svg = plot.querySelector('.main-svg').getBoundingClientRect();
  return {boxes, left: svg.left, right: svg.right, n};
}"""


@pytest.mark.parametrize("user, lang, width", [("demo-supervisor", "es", 800), ("demo-supervisor", "en", 800),
                                               ("demo-researcher", "es", 800), ("demo-supervisor", "en", 1400)])
def test_small_multiple_titles_fit_their_panels(app, browser, user, lang, width):
    ctx, page = clinic_overview(browser, app, width, lang, user)
    page.wait_for_function(f"() => ({PANEL_TITLES_JS})() !== null", timeout=120000)
    found = page.evaluate(PANEL_TITLES_JS)
    boxes = found["boxes"]
    assert len(boxes) == found["n"] >= 12
    for a, b in zip(boxes, boxes[1:]):
        if abs(a["t"] - b["t"]) < 3:   # same row of panels: no title runs into the next
            assert a["r"] <= b["l"], (a["text"], b["text"])
    assert all(found["left"] - 1 <= b["l"] and b["r"] <= found["right"] + 1 for b in boxes)
    assert all(re.search("[▲◆●○]", b["text"]) for b in boxes)       # the status as a symbol …
    page.locator('[data-testid="stPlotlyChart"]').nth(0).scroll_into_view_if_needed()
    shot(page, f"small_multiples_{user}_{lang}_{width}")
    ctx.close()


# -------------------------------------------------------------------------------------- 5. keyboard
FOCUSED_JS = """() => { const e = document.activeElement; const r = e.getBoundingClientRect();
  return {x: r.x, w: r.width, grid: !!e.closest('.st-key-caseload [data-testid="stDataFrame"]') && e.tagName === 'CANVAS',
          skip: (e.getAttribute('data-testid') || '') === 'stSkipToContent' || !!e.closest('[data-testid="stSkipToContent"]'),
          inSidebar: !!e.closest('[data-testid="stSidebar"]'), main: !!e.closest('[data-testid="stMain"]')}; }"""


@pytest.mark.parametrize("lang", ["en", "es"])
def test_keyboard_at_800_px(app, browser, lang):
    ctx, page = open_as(browser, app, 800, lang)
    goto(page, app + "/overview", ready='.st-key-caseload canvas')
    assert sidebar_folded(page)
    # the skip link first; Enter on it puts the focus in the main content
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_JS)["skip"]
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_JS)["main"] or not page.evaluate(FOCUSED_JS)["inSidebar"]
    # from the top, Tab reaches the caseload without ever landing in the folded sidebar, off the screen
    page.goto(app + "/overview")
    page.locator(".st-key-caseload canvas").first.wait_for(timeout=120000)
    idle(page)
    presses = 0
    while True:
        page.keyboard.press("Tab")
        presses += 1
        focus = page.evaluate(FOCUSED_JS)
        assert not focus["inSidebar"] and focus["x"] + focus["w"] > 0, (presses, focus)
        if focus["grid"]:
            break
        assert presses < 16, "the caseload is more than 15 Tab presses away"
    # Enter on a row opens that patient
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url("**/patient?patient=*", timeout=60000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120000)
    idle(page)
    assert shown_patient(page) == page.url.split("patient=")[-1]
    shot(page, f"keyboard_opened_{lang}_800")
    ctx.close()


# ---------------------------------------------------------------------------------- 6. text that fits
GRID_JS = """() => {
  const canvas = document.querySelector('.st-key-caseload [data-testid="stDataFrame"] canvas');
  const key = Object.keys(canvas).find(k => k.startsWith('__reactFiber'));
  let fiber = canvas[key], props = null;
  for (let i = 0; fiber && i < 40 && !props; i++, fiber = fiber.return) {
    const p = fiber.memoizedProps || {};
    if (Array.isArray(p.columns) && p.columns.length && p.columns[0].width !== undefined && p.rowHeight) props = p;
  }
  const font = (props.theme.baseFontStyle || '400 14px') + ' ' + (props.theme.fontFamily || 'sans-serif');
  const ctx = document.createElement('canvas').getContext('2d'); ctx.font = font;
  const pad = 2 * (props.theme.cellHorizontalPadding || 8);
  const lineHeight = (props.theme.lineHeight || 1.4) * 14;
  const widths = {}; props.columns.forEach(c => { widths[c.title] = c.width; });
  const heads = Array.from(document.querySelectorAll('.st-key-caseload table thead th')).map(th => th.textContent);
  const rows = Array.from(document.querySelectorAll('.st-key-caseload table tbody tr')).map(tr =>
      Array.from(tr.querySelectorAll('td')).map(td => td.textContent));
  const lines = (text, width) => { let n = 1, line = '';
    for (const word of text.split(' ')) { const next = line ? line + ' ' + word : word;
      if (ctx.measureText(next).width > width - pad && line) { n += 1; line = word; } else { line = next; } }
    return n; };
  const out = [];
  rows.forEach(cells => cells.forEach((text, i) => { const head = heads[i]; const w = widths[head];
    out.push({head, text, width: w, need: ctx.measureText(text).width + pad, lines: lines(text, w)}); }));
  return {cells: out, rowHeight: props.rowHeight, lineHeight, heads};
}"""


@pytest.mark.parametrize("user, lang, width", [("demo-supervisor", "en", 800), ("demo-supervisor", "es", 1400),
                                               ("demo-researcher", "en", 800), ("demo-researcher", "es", 1400)])
def test_caseload_key_columns_and_reasons_fit(app, browser, user, lang, width):
    ctx, page = clinic_overview(browser, app, width, lang, user)
    page.locator(".st-key-caseload table tbody tr").first.wait_for(state="attached", timeout=60000)
    grid = page.evaluate(GRID_JS)
    heads = [t(lang, h) for h in ("Patient", "Signal now", "Why (reasons)", "Therapist")]
    assert grid["heads"][:4] == heads
    lines_per_row = int((grid["rowHeight"] - 8) // grid["lineHeight"])
    for cell in grid["cells"]:
        if cell["head"] in (heads[0], heads[1], heads[3]):   # IDs (pseudonyms too), signal, therapist: one line
            assert cell["need"] <= cell["width"], cell
        elif cell["head"] == heads[2]:                       # the reasons: wrapped, never cut
            assert grid["rowHeight"] > 64 or cell["lines"] == 1, cell  # Streamlit wraps only above 64 px
            assert cell["lines"] <= lines_per_row, (cell, lines_per_row)
    if user == "demo-researcher":
        ids = [c["text"] for c in grid["cells"] if c["head"] == heads[0]]
        assert ids and all(re.fullmatch(r"P-[0-9a-f]{12}", i) for i in ids)
    if width == 800:
        total = sum(grid_width for head, grid_width in _widths(page).items() if head in heads) + 36
        assert total <= 770, total  # the four key columns side by side at 800 px
    page.locator(".st-key-caseload").scroll_into_view_if_needed()
    shot(page, f"caseload_{user}_{lang}_{width}")
    ctx.close()


def _widths(page) -> dict:
    return page.evaluate(GRID_JS.replace("return {cells: out, rowHeight: props.rowHeight, lineHeight, heads};",
                                         "return widths;"))


RUPTURE_LABELS_JS = """(word) => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const area = plot.querySelector('.bglayer rect, .nsewdrag');
    for (const el of plot.querySelectorAll('.scatterlayer text')) {
      if (el.textContent !== word) continue;
      const r = el.getBoundingClientRect();
      const clip = el.closest('[clip-path]'); let box = null;
      const sub = plot.querySelectorAll('.nsewdrag');
      for (const d of sub) { const b = d.getBoundingClientRect();
        if (r.top >= b.top - 30 && r.bottom <= b.bottom + 30 && r.left < b.right && r.right > b.left) box = b; }
      out.push({l: r.left, r: r.right, boxL: box ? box.left : null, boxR: box ? box.right : null});
    }
  }
  return out;
}"""


@pytest.mark.parametrize("lang", ["en", "es"])
def test_rupture_label_stays_inside_the_chart_at_800_px(app, browser, lang):
    ctx, page = open_as(browser, app, 800, lang)
    goto(page, app + "/patient?patient=D017", ready='[data-testid="stPlotlyChart"] .main-svg')  # ruptures at 6 and 8 (last)
    idle(page, 1500)
    labels = page.evaluate(RUPTURE_LABELS_JS, t(lang, "rupture"))
    assert len(labels) == 2, labels
    for label in labels:
        assert label["boxL"] is not None and label["boxL"] - 1 <= label["l"] and label["r"] <= label["boxR"] + 1, label
    shot(page, f"rupture_label_{lang}_800")
    ctx.close()


# ---------------------------------------------------------------------------------- 7. the sidebar
@pytest.mark.parametrize("lang, width", [("en", 800), ("es", 800), ("en", 1400)])
def test_a_choice_in_the_sidebar_folds_it_at_800_px(app, browser, lang, width):
    ctx, page = open_as(browser, app, width, lang, "demo-supervisor")
    goto(page, app + "/")
    if width < 1000:
        assert sidebar_folded(page)
        open_sidebar(page)
    page.locator('[data-testid="stSidebarNav"] a[href$="/models"]').click()      # the Model explorer
    page.wait_for_url("**/models", timeout=60000)
    idle(page, 1200)
    assert sidebar_folded(page) == (width < 1000)
    if width < 1000:
        main = page.locator('[data-testid="stMain"]').bounding_box()
        assert main["width"] >= 0.9 * width
        open_sidebar(page)
    pick_dataset(page, t(lang, "Demo clinic"))                           # a choice in one of its menus
    page.wait_for_timeout(800)
    assert sidebar_folded(page) == (width < 1000)
    shot(page, f"sidebar_after_choice_{lang}_{width}")
    ctx.close()


# ---------------------------------------------------------------------- 8. numbers the language's way
@pytest.mark.parametrize("lang, width", [("es", 1400), ("es", 800), ("en", 1400)])
def test_numbers_written_the_language_way_and_rounded_alike(app, browser, lang, width, tmp_path):
    ctx, page = open_as(browser, app, width, lang)
    goto(page, app + "/patient?patient=D017", ready='[data-testid="stPlotlyChart"]')
    if width < 1000:
        open_sidebar(page)
    thumb = page.locator('[data-testid="stSidebar"] [data-testid="stSliderThumbValue"]').first.inner_text()
    assert thumb == ("1,00" if lang == "es" else "1.00")
    page.locator('[data-testid="stSidebar"] summary').filter(has_text=t(lang, "Clinical thresholds")).click()
    idle(page)
    field = page.get_by_label(t(lang, "Clinical cut-off (scores above are in the clinical range)"))
    assert field.input_value() == ("63,5" if lang == "es" else "63.5")
    # the reason says the expected score as the table writes it
    status = page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first.inner_text()
    template = t(lang, "score {observed} is {gap} points worse than the expected {expected}")
    word = template.split("{expected}")[0].split()[-1].rstrip(",")           # "expected", "esperado"
    expected = re.search(re.escape(word) + r",? (−?\d+(?:[.,]\d+)?)", status)
    cells = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"] table tbody tr'))
                               .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.textContent))""")
    heads = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"] table thead th'))
                               .map(th => th.textContent)""")
    if width >= 1400:  # the expected score's column is on the screen (the table scrolls sideways at 800 px)
        assert expected and t(lang, "expected") in heads, (status, heads)
        last = cells[-1][heads.index(t(lang, "expected"))]
        assert last.strip() == expected.group(1), (status, last)     # "expected 105.2" in both, not 105 and 105.2
    text = main_text(page)
    if lang == "es":
        assert not re.search(r"\d\.\d", status), status
    shot(page, f"numbers_patient_{lang}_{width}")

    # the RI-CLPM's sentences
    goto(page, app + "/dynamics")
    page.get_by_text(t(lang, "Random-intercept cross-lagged panel model (RI-CLPM)")).wait_for(timeout=180000)
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=180000)
    idle(page, 1500)
    text = main_text(page)
    assert "p = " in text or "p < " in text
    if lang == "es":
        assert not re.search(r"p [=<] \.\d", text)
        assert re.search(r"p [=<] ,\d", text)

    # the upload preview and the file's size
    goto(page, app + "/upload")
    sample = tmp_path / "norte.csv"
    clinic_frame().assign(alliance=lambda f: f["alliance"] + 0.001).to_csv(sample, index=False)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(sample))
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120000)
    idle(page, 1500)
    size = page.locator('[data-testid="stFileChipName"] + div').first.inner_text()
    preview = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"] table tbody td'))
                               .map(td => td.textContent)""")
    decimals = [v for v in preview if re.fullmatch(r"\d+[.,]\d+", v)]
    assert decimals
    if lang == "es":
        assert "," in size and "." not in size, size
        assert all("," in v for v in decimals), decimals[:5]
    else:
        assert all("." in v for v in decimals), decimals[:5]
    shot(page, f"numbers_upload_{lang}_{width}")
    ctx.close()


# ---------------------------------------------------------------------------------------- 9. RI-CLPM
@pytest.mark.parametrize("lang, width", [("en", 1400), ("es", 800)])
def test_riclpm_default_sessions_are_identified_on_a_40_patient_clinic(app, browser, lang, width):
    ctx, page = open_as(browser, app, width, lang, "demo-supervisor")
    goto(page, app + "/dynamics")
    on_the_clinic(page)
    page.get_by_text(t(lang, "Random-intercept cross-lagged panel model (RI-CLPM)")).wait_for(timeout=180000)
    refusal = t(lang, "Only {n} patients have scores in sessions {first}-{last}, fewer than the model's "
                      "{parameters} parameters; the RI-CLPM cannot be estimated. Use fewer sessions, equal "
                      "lagged effects, or more patients.").split("{parameters}")[1].split(".")[0].strip()
    fitted = t(lang, "Free parameters")
    page.wait_for_function("([a, b]) => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m && (m.innerText.includes(a) || m.innerText.includes(b)); }",
                           arg=[fitted, refusal], timeout=240000)   # the fit, or its refusal
    idle(page, 1000)
    text = main_text(page)
    assert refusal not in text and fitted in text
    metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert any(str(N_PATIENTS) in m for m in metrics), metrics
    shot(page, f"riclpm_{lang}_{width}")
    ctx.close()


# ------------------------------------------------------------------------------------ 10. the smaller
@pytest.mark.parametrize("lang, width", [("en", 1400), ("es", 800)])
def test_add_user_form_forgets_the_password(app, browser, lang, width):
    ctx, page = open_as(browser, app, width, lang, "demo-supervisor")
    goto(page, app + "/admin", ready='[data-testid="stForm"] input[type="password"]')
    form = page.locator('[data-testid="stForm"]').first
    name = form.locator('[data-testid="stTextInputField"]').first
    name.fill(f"new-{lang}-{width}")
    name.press("Tab")
    code = form.get_by_label(t(lang, "Therapist code (as in the data's therapist column)"))
    code.fill("T07 Nora")
    code.press("Tab")
    form.locator('input[type="password"]').fill("a long enough password")
    form.locator('input[type="password"]').press("Tab")
    assert name.input_value() == f"new-{lang}-{width}"
    form.locator('[data-testid="stFormSubmitButton"] button').click()
    page.get_by_text(f"new-{lang}-{width}").first.wait_for(timeout=60000)
    idle(page)
    form = page.locator('[data-testid="stForm"]').first
    assert form.locator('input[type="password"]').input_value() == ""
    # a refused one (too short) is not kept either
    form.locator('[data-testid="stTextInputField"]').first.fill(f"other-{lang}-{width}")
    form.locator('input[type="password"]').fill("short")
    form.locator('input[type="password"]').press("Tab")
    form.locator('[data-testid="stFormSubmitButton"] button').click()
    page.locator('[data-testid="stMain"] [data-testid="stAlertContentError"]').first.wait_for(timeout=60000)
    idle(page)
    assert page.locator('[data-testid="stForm"]').first.locator('input[type="password"]').input_value() == ""
    shot(page, f"add_user_{lang}_{width}")
    ctx.close()


@pytest.mark.parametrize("lang, width", [("es", 1400), ("en", 800)])
def test_html_report_names_its_models_in_the_language(app, browser, lang, width):
    from html.parser import HTMLParser

    ctx, page = open_as(browser, app, width, lang, "demo-supervisor")
    goto(page, app + "/models")
    button = page.get_by_role("button", name=t(lang, "Download the report (HTML)"))
    button.wait_for(timeout=240000)
    idle(page)
    with page.expect_download(timeout=300000) as info:
        button.click()
    report = open(info.value.path(), encoding="utf-8").read()

    class Visible(HTMLParser):
        def __init__(self):
            super().__init__()
            self.texts, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style", "code")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style", "code")

        def handle_data(self, data):
            if not self.skip and data.strip():
                self.texts.append(data.strip())

    parser = Visible()
    parser.feed(report)
    cells = set(parser.texts)
    keys = {"unconditional", "unconditional_3level", "hybrid", "hybrid_detrended", "interaction",
            "time_vs_unconditional", "hybrid_vs_unconditional", "interaction_vs_hybrid"}
    if lang == "es":
        assert not cells & keys, cells & keys
        assert not [c for c in cells if "sin dato de within" in c or "sin dato de between" in c]
    assert t(lang, "hybrid") in cells
    ctx.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_script_says_the_address_it_really_uses(browser, tmp_path):
    port = _free_port()
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp_path), "PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    proc = subprocess.Popen(["bash", "scripts/start.sh", "--server.port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        said = ""
        deadline = time.time() + 240
        while "Starting the dashboard on" not in said and time.time() < deadline:
            said = proc.stdout.readline()
            assert said or proc.poll() is None, "scripts/start.sh ended before starting the dashboard"
        address = re.search(r"http://\S+", said).group(0)
        assert address == f"http://127.0.0.1:{port}", said
        wait_healthy(address, 120)
        page = browser.new_page()
        page.goto(address)
        page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=120000)
        page.close()
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
