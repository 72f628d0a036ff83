"""The one-page patient summary PDF: which route, and how fast for a caseload of 25.

Run from the repository root: ``python bench/bench_summary_pdf.py`` (``--no-kaleido`` skips the browser
route, ``--no-matplotlib`` the matplotlib route). Writes the PDFs and their PNG renderings
(``pdftoppm``) to ``bench/out/summary_pdf/`` to be looked at.

Three routes for the chart, each drawing the same Plotly figure (``core.reporting.figures.patient_chart``
of the demo clinic's patients, with the clinic's expected courses):

1. **fpdf2** (the project's): ``core.reporting.summary_pdf`` — the whole page, the chart drawn from the
   figure object by ``core.reporting.pdf_chart``; timed per patient for 25 patients, everything included
   (ruptures, the patient's signal, labels, the page, font subsetting), the clinic's model fitted once
   (the page caches it). **Target: < 1 s per patient.**
2. **Kaleido + Chromium**: Plotly's own static export (``kaleido`` 1.x driving Debian's
   ``/usr/bin/chromium``), the chart alone as PDF; the first export (browser start) and the next 25
   with the browser kept running (``kaleido.start_sync_server``). The page around it would still need
   a PDF library.
3. **matplotlib**: the same traces redrawn with matplotlib (a converter written here, lines, markers,
   band, texts, legend), the chart alone saved as PDF, 25 times.

Install weight: what each route adds to the project's virtual environment (its packages' folders in
site-packages, those already installed for the dashboard not counted) and, for Kaleido, Debian's
chromium package (``dpkg-query``'s Installed-Size of chromium and chromium-common).

Exits with status 1 when the fpdf2 route misses the target.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "summary_pdf"
N = 25


def _site_mb(*names: str) -> float:
    import site

    total = 0
    for base in site.getsitepackages():
        for name in names:
            path = Path(base) / name
            if path.exists():
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total / 2 ** 20


def _debian_mb(*packages: str) -> float | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Installed-Size}\n", *packages], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum(int(x) for x in out.split() if x.isdigit()) / 1024


def _render(pdf: Path) -> None:
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "90", "-png", "-singlefile", str(pdf), str(pdf.with_suffix(""))], check=False)


def _setup():
    from core.clinical.signal import fit_signal_model, published_settings
    from core.demo import demo_dataset
    from core.reporting.patient_text import chart_labels

    ds = demo_dataset()
    settings, _note = published_settings(ds.data["symptoms"])
    model = fit_signal_model(ds.data, settings)
    labels = chart_labels(["symptoms", "alliance"], symptom_scale="total", alliance_range=(1, 7), alliance_is_ans=True)
    patients = sorted(ds.data["patient"].unique())[:N]
    return ds, settings, model, labels, patients


def _figure(ds, settings, model, labels, pid):
    from core.reporting.figures import patient_chart
    from core.reporting.summary_pdf import summarise_patient

    s = summarise_patient(ds.data, pid, dataset=ds.name, settings=settings, model=model, labels=labels,
                          ranges={"alliance": (1, 7)})
    return s, patient_chart(s.sessions, s.measures, signal=s.signal, cutoff=s.settings.cutoff, labels=s.labels,
                            ranges=s.ranges)


def bench_fpdf2(ds, settings, model, labels, patients) -> dict:
    from core.i18n import language
    from core.reporting.summary_pdf import summarise_patient, summary_pdf

    times, cpu = [], []
    for k, pid in enumerate(patients):
        lang = "es" if k % 2 else "en"
        start, start_cpu = time.perf_counter(), time.process_time()
        with language(lang):
            s = summarise_patient(ds.data, pid, dataset=ds.name, settings=settings, model=model, labels=labels,
                                  ranges={"alliance": (1, 7)}, produced_by="bench", demo=True)
            pdf = summary_pdf(s)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if k < 2:
            path = OUT / f"fpdf2_{pid}_{lang}.pdf"
            path.write_bytes(pdf)
            _render(path)
    return {"route": "fpdf2 (page + chart)", "first": times[0], "mean": statistics.mean(times), "max": max(times),
            "note": f"CPU time per patient: mean {statistics.mean(cpu):.3f} s, max {max(cpu):.3f} s",
            "extra_mb": _site_mb("fpdf", "fpdf2-2.8.9.dist-info", "fontTools", "defusedxml")
            + sum(f.stat().st_size for f in (ROOT / "core" / "reporting" / "fonts").iterdir()) / 2 ** 20}


def bench_fpdf2_chart(ds, settings, model, labels, patients) -> dict:
    """The chart alone through fpdf2, as the other two routes are timed."""
    from fpdf import FPDF

    from core.reporting.pdf_chart import draw_figure
    from core.reporting.summary_pdf import FONT, _add_fonts

    figures = [_figure(ds, settings, model, labels, pid)[1] for pid in patients]
    times = []
    for k, fig in enumerate(figures):
        start = time.perf_counter()
        pdf = FPDF(unit="mm", format="A4")
        _add_fonts(pdf)
        pdf.add_page()
        draw_figure(pdf, fig, 14, 14, 182, 120, font=FONT)
        data = bytes(pdf.output())
        times.append(time.perf_counter() - start)
        if k == 0:
            (OUT / "fpdf2_chart_0.pdf").write_bytes(data)
            _render(OUT / "fpdf2_chart_0.pdf")
    return {"route": "fpdf2 (chart only)", "first": times[0], "mean": statistics.mean(times), "max": max(times),
            "extra_mb": 0.0, "note": "(the same packages as the page)"}


def bench_kaleido(ds, settings, model, labels, patients) -> dict:
    import kaleido

    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    figures = [_figure(ds, settings, model, labels, pid)[1] for pid in patients]
    start = time.perf_counter()
    figures[0].write_image(OUT / "kaleido_first.pdf", width=700)
    first = time.perf_counter() - start
    kaleido.start_sync_server(silence_warnings=True)
    times = []
    try:
        for k, fig in enumerate(figures):
            start = time.perf_counter()
            path = OUT / f"kaleido_{k}.pdf"
            fig.write_image(path, width=700)
            times.append(time.perf_counter() - start)
            if k:
                path.unlink()
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    figures[0].write_image(OUT / "kaleido_screen.png", width=700)  # Plotly.js's own rendering, for comparison
    _render(OUT / "kaleido_0.pdf")
    chromium = _debian_mb("chromium", "chromium-common")
    return {"route": "Kaleido + Chromium (chart only)", "first": first, "mean": statistics.mean(times),
            "max": max(times), "extra_mb": _site_mb("kaleido", "choreographer", "logistro", "simplejson")
            + (chromium or 0), "note": f"of which Debian chromium {chromium:.0f} MB" if chromium else ""}


def _mpl_figure(fig, plt):
    """The Plotly figure's traces redrawn with matplotlib (what the patient chart uses)."""
    import numpy as np

    from core.reporting.pdf_chart import _plain

    symbols = {"triangle-up": "^", "diamond": "D", "circle": "o", "circle-open": "o", "x": "x"}
    names = sorted({t.yaxis or "y" for t in fig.data}, key=lambda n: int(n[1:] or 1))
    out, axes = plt.subplots(len(names), 1, figsize=(7.2, 4.6), sharex=True)
    axes = dict(zip(names, np.atleast_1d(axes)))
    for t in fig.data:
        ax = axes[t.yaxis or "y"]
        x = np.array([np.nan if v is None else v for v in t.x], dtype=float)
        y = np.array([np.nan if v is None else v for v in t.y], dtype=float)
        if t.fill == "toself":
            ax.fill(x, y, color=t.fillcolor.replace("rgba(", "").split(",")[0] and "#1565c0", alpha=0.1, lw=0,
                    label=_plain(t.name))
            continue
        style = {"dash": "--", "dot": ":"}.get(t.line.dash if t.line else None, "-")
        if "lines" in (t.mode or ""):
            ax.plot(x, y, style, color=t.line.color, lw=(t.line.width or 2) * 0.6,
                    label=_plain(t.name) if t.showlegend is not False else None)
        if "markers" in (t.mode or "") and t.marker is not None:
            sym = str(t.marker.symbol or "circle")
            ax.scatter(x, y, marker=symbols.get(sym, "o"), s=(t.marker.size or 6) * 3,
                       facecolors="none" if sym.endswith("open") else t.marker.color, edgecolors=t.marker.color,
                       label=_plain(t.name) if "lines" not in (t.mode or "") else None, zorder=3)
        if "text" in (t.mode or "") and t.text is not None:
            texts = [t.text] * len(x) if isinstance(t.text, str) else list(t.text)
            for a, b, s in zip(x, y, texts):
                if s:
                    ax.annotate(_plain(s), (a, b), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=7, color=t.textfont.color if t.textfont else "#212121")
    for name, ax in axes.items():
        spec = fig.layout["yaxis" + name[1:]]
        ax.set_ylabel(_plain(spec.title.text if spec.title else ""), fontsize=8)
        if spec.range is not None:
            ax.set_ylim(*spec.range)
        ax.grid(color="#e3e3e3", lw=0.5)
    for note in fig.layout.annotations or ():
        pass
    out.legend(loc="lower left", ncol=3, fontsize=6.5, frameon=False)
    out.tight_layout(rect=(0, 0.12, 1, 1))
    return out


def bench_matplotlib(ds, settings, model, labels, patients) -> dict:
    import matplotlib

    matplotlib.use("pdf")
    import matplotlib.pyplot as plt

    figures = [_figure(ds, settings, model, labels, pid)[1] for pid in patients]
    times = []
    for k, fig in enumerate(figures):
        start = time.perf_counter()
        drawn = _mpl_figure(fig, plt)
        path = OUT / f"matplotlib_{k}.pdf"
        drawn.savefig(path)
        plt.close(drawn)
        times.append(time.perf_counter() - start)
        if k == 0:
            _render(path)
        else:
            path.unlink()
    return {"route": "matplotlib (chart only)", "first": times[0], "mean": statistics.mean(times), "max": max(times),
            "extra_mb": _site_mb("matplotlib", "contourpy", "kiwisolver", "cycler", "pyparsing", "fontTools",
                                 "matplotlib.libs")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-kaleido", action="store_true")
    parser.add_argument("--no-matplotlib", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    setup = _setup()
    rows = [bench_fpdf2(*setup), bench_fpdf2_chart(*setup)]
    if not args.no_kaleido:
        try:
            rows.append(bench_kaleido(*setup))
        except Exception as err:  # noqa: BLE001 - no kaleido or no browser: said, not fatal
            print(f"Kaleido route not measured: {type(err).__name__}: {err}")
    if not args.no_matplotlib:
        try:
            rows.append(bench_matplotlib(*setup))
        except ImportError as err:
            print(f"matplotlib route not measured: {err}")
    print(f"{'route':36} {'first (s)':>10} {'mean (s)':>9} {'max (s)':>8} {'adds (MB)':>10}")
    for r in rows:
        print(f"{r['route']:36} {r['first']:10.2f} {r['mean']:9.3f} {r['max']:8.3f} {r['extra_mb']:10.1f}  {r.get('note', '')}")
    print(f"PDFs and PNGs in {OUT.relative_to(ROOT)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ok = rows[0]["mean"] < 1.0 and rows[0]["max"] < 1.0
    print("target < 1 s per patient (fpdf2 route, 25 patients):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
