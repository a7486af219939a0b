#!/usr/bin/env python3
"""The report's size and render time for a generated zoo (default 100 models x 5 precisions x 4 targets), from the
files the stages write (tests/helpers/report_zoo.py), in a temporary directory; results go to
benchmarks/results/report-scale-<date>-<host>.json (committed, with the machine and its load).

    .venv/bin/python benchmarks/report_scale.py [--models 100] [--repeat 3]

Measures: write_report with an empty figure cache (every figure rendered by vl-convert) and with a warm one (an
unchanged zoo re-reported), each in a fresh Python process (write_report's own imports, jinja2/altair/vl-convert,
included; `import engine_factory.report` before it reported apart); the bytes of summary.json, the index, the largest
model page, the figures and the whole report folder; and, where headless Chromium is installed, the rendered height
of the index and of the tallest model page (px at 1400 px wide).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

RENDER = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
t0 = time.perf_counter()
from engine_factory import paths
from engine_factory.report import write_report
imported = time.perf_counter()
settings = json.load(open("settings.json"))
write_report(paths.REPORT_JSON, paths.REPORT_HTML, **settings)
print(json.dumps({"import_s": imported - t0, "write_report_s": time.perf_counter() - imported}))
"""


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_mb": mem,
        "python": platform.python_version(),
        "gpu": "none",
        "load_average_at_start": os.getloadavg(),
    }


def render(work: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RENDER, str(REPO)], cwd=work, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def heights(work: Path) -> dict | None:
    """Rendered page heights in headless Chromium (None where it is not installed)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from engine_factory import paths

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:

        def height(page: Path) -> int:
            browser.get(page.as_uri())
            return int(browser.execute_script("return document.documentElement.scrollHeight"))

        models = sorted((work / paths.REPORT_PAGES).glob("*.html"))
        model_heights = [height(p) for p in models]
        return {
            "index_px": height(work / paths.REPORT_HTML),
            "model_page_max_px": max(model_heights),
            "model_page_median_px": statistics.median(model_heights),
            "width_px": 1400,
        }
    finally:
        browser.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from engine_factory import paths

    from helpers import report_zoo

    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp:
        work = Path(tmp)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            generated = report_zoo.generate(args.models)
        finally:
            os.chdir(cwd)
        (work / "settings.json").write_text(json.dumps(generated["settings"]))
        cold, warm = [], []
        for _ in range(args.repeat):
            shutil.rmtree(work / paths.REPORT_CHART_CACHE, ignore_errors=True)
            cold.append(render(work))
            warm.append(render(work))
        report_dir = work / paths.REPORT_HTML.rsplit("/", 1)[0]
        size = lambda p: p.stat().st_size  # noqa: E731
        pages = sorted((work / paths.REPORT_PAGES).glob("*.html"))
        figures = sorted((work / paths.REPORT_CHARTS).glob("*.svg"))
        summary = json.loads((work / paths.REPORT_JSON).read_text())
        results = {
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "zoo": {
                "models": args.models,
                "targets": summary["overview"]["outcomes"]["targets"],
                "outcomes": summary["overview"]["outcomes"],
            },
            "seconds": {
                "cold_cache": [round(r["write_report_s"], 2) for r in cold],
                "warm_cache": [round(r["write_report_s"], 2) for r in warm],
                "cold_median": round(statistics.median(r["write_report_s"] for r in cold), 2),
                "warm_median": round(statistics.median(r["write_report_s"] for r in warm), 2),
                "import_scripts_report_median": round(statistics.median(r["import_s"] for r in cold + warm), 2),
            },
            "bytes": {
                "summary_json": size(work / paths.REPORT_JSON),
                "index_html": size(work / paths.REPORT_HTML),
                "index_pages": 1 + len(list(work.glob(paths.REPORT_LIST_GLOB))),
                "model_pages": len(pages),
                "model_page_max": max(map(size, pages)),
                "model_page_median": statistics.median(map(size, pages)),
                "figures": len(figures),
                "figure_max": max(map(size, figures)),
                "report_folder": sum(size(p) for p in report_dir.rglob("*") if p.is_file()),
                "figure_cache": sum(size(p) for p in (work / paths.REPORT_CHART_CACHE).iterdir()),
            },
            "rendered": heights(work),
            "command": f"benchmarks/report_scale.py --models {args.models} --repeat {args.repeat}",
        }
    out = REPO / "benchmarks" / "results" / f"report-scale-{results['date']}-{platform.node()}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print(f"written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
