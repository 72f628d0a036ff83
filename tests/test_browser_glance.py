"""Browser test of issue 18 (charts at a glance, tables that fit, a tablet, the keyboard).

* Every page at 1400 and 800 px: a full-height screenshot in test-artifacts/glance_<page>_<width>.png,
  the contrast of every piece of text measured in the page (≥ 4.5:1, WCAG AA; chart text included),
  no metric cut short, the sidebar folded at 800 px and open at 1400 px.
* The keyboard at 800 px: Tab into the caseload, open a patient (Shift+Space), back; open one through
  *Open patient*; the details toggle; sign in and out; a visible focus outline on the way.
* The forest plot and the pooled table at 1400 and 800 px; the note clear of the axis title.
* A fresh server's first load never lists the pages/ folder's file names in the sidebar.
"""
import time

import pytest
from browser_support import (ARTIFACTS, ROOT, browser_page, require_chromium, running_app, tab_to, tall_screenshot,
                             wait_idle)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = {"home": "", "overview": "overview", "patient": "patient", "models": "models", "dynamics": "dynamics",
         "upload": "upload", "account": "account"}

#: Every visible text node's colour against the background it is drawn on (the first opaque
#: background up the tree; a chart's text against the plot background), as WCAG computes it.
CONTRAST_JS = """() => {
  const parse = (c) => { const m = (c || '').match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const over = (top, base) => [0, 1, 2].map((i) => top[3] * top[i] + (1 - top[3]) * base[i]);
  const backgroundOf = (el) => { const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    let base = [255, 255, 255]; for (let i = layers.length - 1; i >= 0; i--) base = over(layers[i], base); return base; };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const walker = document.createTreeWalker(document.querySelector('[data-testid="stApp"]'), NodeFilter.SHOW_TEXT);
  const seen = new Set(); const out = [];
  while (walker.nextNode()) {
    const node = walker.currentNode; const text = node.textContent.trim(); if (!text) continue;
    const el = node.parentElement; if (!el || seen.has(el)) continue; seen.add(el);
    const st = getComputedStyle(el);
    if (st.visibility === 'hidden' || st.display === 'none') continue;
    if ((st.fontFamily || '').toLowerCase().includes('material')) continue;  // icon ligatures
    const box = el.getBoundingClientRect(); if (box.width <= 1 || box.height <= 1) continue;  // hidden, or for screen readers only
    if (el.closest('[aria-hidden="true"], [disabled], [aria-disabled="true"], .hoverlayer, .modebar')) continue;
    let fg, bg; const svg = el.closest('svg');
    if (svg) {
      fg = parse(st.fill); if (!fg) continue; fg[3] *= parseFloat(st.fillOpacity || '1');
      bg = backgroundOf(svg.parentElement || svg);
      const chart = el.closest('[data-testid="stPlotlyChart"]'); const plot = chart && chart.querySelector('.bglayer rect');
      if (plot) { const c = parse(getComputedStyle(plot).fill); if (c && c[3] > 0) bg = over(c, bg); }
    } else {
      fg = parse(st.color);
      const thumb = el.closest('[data-testid="stSliderThumbValue"]');  // floats above the thumb, on the slider's background
      bg = backgroundOf(thumb ? thumb.closest('[data-testid="stSlider"]') : el);
    }
    if (!fg) continue;
    let opacity = 1; for (let e = el; e && e.nodeType === 1; e = e.parentElement) opacity *= parseFloat(getComputedStyle(e).opacity || '1');
    if (opacity < 0.05) continue;  // not shown until hovered
    const r = ratio(over([fg[0], fg[1], fg[2], fg[3] * opacity], bg), bg);
    out.push({text: text.slice(0, 60), ratio: Math.round(r * 100) / 100, svg: !!svg});
  }
  return out;
}"""

#: Metric labels and values whose text is wider than their box (cut short with "…").
TRUNCATED_JS = """() => Array.from(document.querySelectorAll(
    '[data-testid="stMetricValue"], [data-testid="stMetricLabel"]')).filter(
    (e) => e.getBoundingClientRect().width > 0 && e.scrollWidth > e.clientWidth + 1).map((e) => e.innerText)"""


#: Tables (Streamlit's data grid) whose columns are wider than the table: a number cut off at the edge.
OVERFLOW_JS = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller'))
    .filter((s) => s.getBoundingClientRect().width > 0 && s.scrollWidth > s.clientWidth + 1)
    .map((s) => { const table = s.closest('[data-testid="stDataFrame"]');
      const before = Array.from(document.querySelectorAll('h1, h2, h3, h4, [data-testid="stMarkdownContainer"] strong'))
        .filter((h) => h.compareDocumentPosition(table) & Node.DOCUMENT_POSITION_FOLLOWING);
      return (before.length ? before[before.length - 1].innerText : '?') + ` (${s.scrollWidth} > ${s.clientWidth} px)`; })"""
#: Pages whose every table fits at 1400 px (the caseload and a patient's sessions keep their key
#: columns first and scroll to the rest).
FITS_AT_1400 = ("home", "models", "dynamics")


def _idle(page, settle: int = 1200) -> None:
    wait_idle(page, settle)


def _shot(page, name: str) -> None:
    """A screenshot of the whole page (the window as tall as the main area's content)."""
    tall_screenshot(page, ARTIFACTS / f"glance_{name}.png")


def _sidebar_folded(page) -> bool:
    return page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed") == "true"


_tab_to = tab_to


def _focus_ring(page) -> float:
    """Width in px of the focused element's outline (0 when it has none)."""
    return page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return s.outlineStyle === 'none' ? 0 : parseFloat(s.outlineWidth); }""")


def test_first_load_of_a_fresh_server_shows_page_titles_not_file_names(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/patient", wait_until="commit")
        seen = set()
        deadline = time.time() + 30
        while time.time() < deadline:  # every 50 ms until the titles are there
            items = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stSidebarNavLink"]'))
                                          .map((a) => a.innerText.trim())""")
            seen.update(items)
            if any("Clinic data" in i for i in items):
                break
            page.wait_for_timeout(50)
        assert any("Clinic data" in i for i in seen), seen
        files = {"app", "account", "admin", "dynamics", "home", "models", "overview", "patient", "upload"}
        assert not files & {i.strip() for i in seen}, seen


def test_every_page_at_1400_and_800_px(tmp_path):
    require_chromium()
    problems = []
    with running_app(tmp_path) as url, browser_page() as page:
        for width in (1400, 800):
            page.set_viewport_size({"width": width, "height": 1000})
            for name, path in PAGES.items():
                page.goto(f"{url}/{path}")
                page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=120000)
                _idle(page)
                if path in ("overview", "patient", "models"):
                    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=120000)
                    _idle(page, 800)
                _shot(page, f"{name}_{width}")
                low = [t for t in page.evaluate(CONTRAST_JS) if t["ratio"] < 4.5]
                problems += [f"{name} at {width}px: {t['text']!r} {t['ratio']}:1" for t in low]
                problems += [f"{name} at {width}px: metric cut short: {t!r}" for t in page.evaluate(TRUNCATED_JS)]
                if width == 1400 and name in FITS_AT_1400:
                    problems += [f"{name}: a table wider than the page: {t!r}" for t in page.evaluate(OVERFLOW_JS)]
                folded = _sidebar_folded(page)
                if width == 800:
                    main = page.locator('[data-testid="stMain"]').bounding_box()
                    assert folded and main["width"] >= 0.9 * width, (name, folded, main)
                else:
                    assert not folded, name
    assert not problems, "\n".join(problems[:30])


def test_keyboard_walk_at_800_px(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.set_viewport_size({"width": 800, "height": 1000})
        page.goto(url + "/overview")
        page.get_by_text("Caseload, most in need of attention first").wait_for(timeout=120000)
        _idle(page)
        assert _sidebar_folded(page)

        # Tab into the caseload, one row down, Shift+Space: that patient's page opens
        _tab_to(page, "(e) => e.closest('[data-testid=\"stDataFrame\"]') !== null && e.tagName === 'CANVAS'")
        ring = page.evaluate("""() => getComputedStyle(document.activeElement.closest('[data-testid="stDataFrame"]'))
                                     .outlineWidth""")
        assert float(ring.rstrip("px")) >= 3  # the table shows it has the focus
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Shift+Space")
        page.wait_for_url("**/patient?patient=*", timeout=60000)
        page.get_by_text("Jacobson–Truax status").wait_for(timeout=60000)
        _idle(page)
        opened = page.url.split("patient=")[-1]
        assert opened in ("D017", "D040"), opened  # the first rows: not on track (issue 23's signal)

        # the details, by keyboard: Tab to the toggle, Space
        _tab_to(page, "(e) => e.getAttribute('role') === 'switch' || (e.type === 'checkbox' && "
                      "(e.closest('label') || {}).innerText === 'Show details')")
        while "Show details" not in page.evaluate("() => (document.activeElement.closest('label') || {}).innerText || ''"):
            page.keyboard.press("Tab")
        assert _focus_ring(page) >= 3 or page.evaluate(
            "() => getComputedStyle(document.activeElement.closest('label')).outlineStyle") != "none"
        page.keyboard.press("Space")
        page.get_by_text("at-risk bound").first.wait_for(timeout=30000)
        _idle(page)
        _shot(page, f"patient_{opened}_details_800")

        # back to the caseload, which stays put (the selection does not reopen the patient)
        _idle(page)
        page.go_back()
        try:
            page.get_by_text("Caseload, most in need of attention first").wait_for(timeout=60000)
        except Exception:
            _shot(page, "failed_back_800")
            raise AssertionError(f"Back did not show the caseload: {page.url}") from None
        _idle(page, 2500)
        assert page.url.split("?")[0].endswith("/overview")

        # the other route: the Open patient box and its button
        _tab_to(page, "(e) => e.getAttribute('aria-label') === 'Open patient' || "
                      "(e.closest('[data-testid=\"stSelectbox\"]') || {}).innerText?.startsWith('Open patient')")
        page.keyboard.type("D042")
        page.keyboard.press("Enter")
        _idle(page)
        _tab_to(page, "(e) => e.tagName === 'BUTTON' && e.innerText.trim() === 'Open patient page'")
        assert _focus_ring(page) >= 3
        page.keyboard.press("Enter")
        page.wait_for_url("**/patient?patient=D042", timeout=60000)
        page.get_by_text("Jacobson–Truax status").wait_for(timeout=60000)

        # sign in and out with the keyboard
        page.goto(url + "/account")
        page.get_by_role("button", name="Sign in").wait_for(timeout=60000)
        _idle(page)
        _tab_to(page, "(e) => e.getAttribute('aria-label') === 'User name'")
        page.keyboard.type("demo-supervisor")
        page.keyboard.press("Tab")
        page.keyboard.type("demo")
        page.keyboard.press("Enter")
        page.locator('[data-testid="stSidebar"]').get_by_text("Signed in as").wait_for(state="attached", timeout=60000)
        _idle(page)
        # the folded sidebar opens from the keyboard, and its links show where the focus is
        _tab_to(page, "(e) => !!e.closest('[data-testid=\"stExpandSidebarButton\"], "
                      "[data-testid=\"stSidebarCollapsedControl\"]')")
        page.keyboard.press("Enter")
        page.wait_for_timeout(800)
        _tab_to(page, "(e) => e.getAttribute('data-testid') === 'stSidebarNavLink' && e.innerText.includes('Account')")
        assert _focus_ring(page) >= 3
        _shot(page, "sidebar_focus_800")
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Sign out", exact=True).wait_for(timeout=60000)
        _idle(page)
        _tab_to(page, "(e) => e.tagName === 'BUTTON' && e.innerText.trim() === 'Sign out'")
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Sign in").wait_for(timeout=60000)


def test_forest_plot_and_pooled_table_at_1400_and_800_px(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/dynamics")
        page.get_by_text("Upload studies").click()
        page.locator("input[type=file]").set_input_files(str(ROOT / "tests" / "data" / "multistudy_public.csv"))
        page.get_by_text("Stage 2: pooled over studies").wait_for(timeout=180000)
        _idle(page)
        for width in (1400, 800):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_timeout(1000)
            if width == 800 and not _sidebar_folded(page):  # it folds itself only when a page loads narrow
                page.locator('[data-testid="stSidebar"]').hover()
                page.locator('[data-testid="stSidebarCollapseButton"] button').click()
                page.wait_for_function("""() => document.querySelector('[data-testid="stSidebar"]')
                                             .getAttribute('data-collapsed') === 'true'""", timeout=10000)
            page.wait_for_timeout(1500)
            plot = page.locator('[data-testid="stPlotlyChart"]').first
            plot.scroll_into_view_if_needed()
            text = plot.inner_text()
            assert "Estimate [95% CI]" in text and "Weight" in text and "Heterogeneity: τ²" in text
            # the note overlaps neither the axis title and tick labels nor the plot
            boxes = plot.evaluate("""(el) => { const r = (e) => { const b = e.getBoundingClientRect();
                  return [b.left, b.top, b.right, b.bottom]; };
                const note = Array.from(el.querySelectorAll('.annotation')).find((a) => a.textContent.startsWith('Heterogeneity'));
                return {note: r(note), title: r(el.querySelector('.xtitle')), plot: r(el.querySelector('.nsewdrag')),
                        ticks: Array.from(el.querySelectorAll('.xtick text')).map(r)}; }""")
            overlap = lambda a, b: a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]  # noqa: E731
            assert not any(overlap(boxes["note"], b) for b in [boxes["title"], boxes["plot"], *boxes["ticks"]]), \
                (width, boxes)
            ARTIFACTS.mkdir(exist_ok=True)
            plot.screenshot(path=str(ARTIFACTS / f"glance_forest_{width}.png"))
            _shot(page, f"dynamics_studies_{width}")
            low = [t for t in page.evaluate(CONTRAST_JS) if t["ratio"] < 4.5]
            assert not low, low[:10]
            # every table fits at 1400 px; at 800 px stage 1 and the pooled tables do (the RI-CLPM's wide
            # tables scroll sideways)
            wide = [t for t in page.evaluate(OVERFLOW_JS)
                    if width == 1400 or not t.startswith(("Lagged effects", "Beside the lagged multilevel model"))]
            assert not wide, (width, wide)
