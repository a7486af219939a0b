"""The report in a real browser: headless Chromium (Debian `chromium` + `chromium-driver`, through selenium) loads
the report of a real workflow run of the tiny test zoo from file://, and what a person sees is checked against
summary.json: the overview's numbers, the reasons said once, every link resolving to a file, the filter working,
the model pages' figures. Saves a screenshot of the overview (FACTORY_REPORT_SCREENSHOT=path also keeps one there).

Opt-in (`-m browser`; `make test-browser` installs Chromium as root and runs it); skipped, saying why, where
Chromium or its driver is missing.
"""

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from engine_factory import paths

from helpers import load_test_config, snakemake, write_config

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MISSING = (
    "Chromium or chromium-driver is not installed (Debian: apt-get install -y chromium chromium-driver; "
    "`make test-browser` installs them as root)"
)
if not (CHROMIUM and DRIVER):
    if os.environ.get("FACTORY_BROWSER_REQUIRED"):  # make test-browser (CI): never a silent skip
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("browser-zoo")
    write_config(workdir, load_test_config("tiny"))
    snakemake(workdir)
    return workdir


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def visible_links(browser) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href], img[src]')).map(e => e.href || e.src)"
    )


def assert_resolves(page_url: str, url: str) -> None:
    parsed = urlparse(url)
    assert parsed.scheme == "file", f"{page_url}: link leaves the report: {url}"
    assert Path(unquote(parsed.path)).is_file(), f"{page_url}: {url} does not resolve"


def test_overview_numbers_links_filter_and_screenshot(zoo, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    summary = json.loads((zoo / paths.REPORT_JSON).read_text())
    plans = summary["plans"]
    index = (zoo / paths.REPORT_HTML).as_uri()
    browser.get(index)
    shown = {
        t.get_attribute("data-outcome"): int(t.find_element(By.CLASS_NAME, "n").text)
        for t in browser.find_elements(By.CSS_SELECTOR, "#overview .tile")
    }
    # what a person reads equals summary.json, and summary.json equals its own cells
    assert (
        shown["built"]
        == summary["overview"]["outcomes"]["built"]
        == sum((zoo / p["plan"]).is_file() for p in plans if p["status"] != "skipped")
    )
    for outcome in ("pass", "fail", "not-run", "skipped", "failed"):
        assert shown[outcome] == summary["overview"]["outcomes"][outcome] == sum(p["status"] == outcome for p in plans)
    assert shown["not-run"] == 11 and shown["skipped"] == 1  # the tiny zoo here: no GPU, fp8 not on sm86
    browser.find_element(By.CSS_SELECTOR, "details#reasons summary").click()  # folded below the grid: open it
    reasons = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#overview li.reason")]
    no_gpu = [r for r in reasons if "plan_execution" in r and "no CUDA GPU" in r]
    assert len(no_gpu) == 1 and f"(all {shown['not-run']})" in no_gpu[0], reasons
    assert browser.find_element(By.CSS_SELECTOR, "#overview svg").is_displayed()  # the chart, drawn without JS
    screenshot = tmp_path / "report-overview.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    if os.environ.get("FACTORY_REPORT_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["FACTORY_REPORT_SCREENSHOT"])
    for url in visible_links(browser):
        assert_resolves(index, url)

    # the filter (inline JS): only models with a skipped target remain
    Select(browser.find_element(By.NAME, "outcome")).select_by_value("skipped")
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#models tbody tr") if r.is_displayed()]
    assert [r.get_attribute("data-model") for r in rows] == ["tiny_cnn"]
    assert browser.find_element(By.ID, "shown").text == "1"
    Select(browser.find_element(By.NAME, "outcome")).select_by_value("")
    Select(browser.find_element(By.NAME, "precision")).select_by_value("fp16")
    rows = [
        r.get_attribute("data-model")
        for r in browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        if r.is_displayed()
    ]
    assert rows == sorted(m for m, info in summary["models"].items() if "fp16" in info["precisions"])

    # sort (inline JS): by plans MB, largest last
    browser.find_element(By.XPATH, "//table[@id='models']//th[text()='plans MB']").click()
    mb = [
        float(r.find_elements(By.TAG_NAME, "td")[-2].get_attribute("textContent"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    ]
    assert mb == sorted(mb) and len(mb) == len(summary["models"])


def test_model_pages_show_numbers_and_every_link_resolves(zoo, browser):
    from selenium.webdriver.common.by import By

    summary = json.loads((zoo / paths.REPORT_JSON).read_text())
    for model in summary["models"]:
        page = (zoo / paths.report_page(model)).as_uri()
        browser.get(page)
        cells = browser.find_elements(By.CSS_SELECTOR, "table.matrix td.cell")
        expected = [p for p in summary["plans"] if p["model"] == model]
        assert sorted(
            (c.get_attribute("data-precision"), c.get_attribute("data-target"), c.get_attribute("data-outcome"))
            for c in cells
        ) == sorted((p["precision"], p["target"], p["status"]) for p in expected)
        assert browser.find_element(By.CSS_SELECTOR, "figure.charts svg").is_displayed()
        parity = browser.find_element(By.CSS_SELECTOR, "table.parity").text
        assert "cosine ≥" in parity  # the tolerance each figure was held to
        for url in visible_links(browser):
            assert_resolves(page, url)
        # each built plan links its plan, provenance, in-toto statement, validation and its build job's log (no GPU
        # here: the build job validated it, so there is no validate job's log to link)
        for p in expected:
            if p["status"] != "skipped":
                assert {"plan", "provenance", "intoto", "validation", "build_log"} <= set(p["links"])
                assert "validate_log" not in p["links"]


def test_the_index_opens_with_what_can_ship(zoo, browser):
    """The first screen is the model × precision grid (verdict, accuracy, how it was established), equal to
    summary.json's; the reasons are folded below it until opened."""
    from selenium.webdriver.common.by import By

    summary = json.loads((zoo / paths.REPORT_JSON).read_text())
    grid = summary["overview"]["grid"]
    browser.get((zoo / paths.REPORT_HTML).as_uri())
    table = browser.find_element(By.ID, "grid")
    assert table.is_displayed() and table.location["y"] < 300  # at the top, not below ~2,800 px of reasons
    shown = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr"):
        for td in row.find_elements(By.CSS_SELECTOR, "td.ship"):
            if td.get_attribute("data-verdict"):
                shown[(row.get_attribute("data-model"), td.get_attribute("data-precision"))] = td
    assert set(shown) == {(m, p) for m, row in grid.items() for p in row}
    for (m, p), td in shown.items():
        cell = grid[m][p]
        assert td.get_attribute("data-verdict") == cell["verdict"]
        assert cell["label"] in td.text and (cell["accuracy"] or "") in td.text
        if cell["established"]:
            assert cell["established"] in td.text
    # no GPU here: nothing is "verified on GPU"; the fp32 plans' ONNX variants matched in onnxruntime
    assert all(c["verdict"] != "verified" for row in grid.values() for c in row.values())
    assert {row["fp32"]["verdict"] for row in grid.values() if "fp32" in row} == {"onnx-verified"}
    reasons = browser.find_elements(By.CSS_SELECTOR, "#overview li.reason")
    assert reasons and not any(r.is_displayed() for r in reasons)  # folded
    browser.find_element(By.CSS_SELECTOR, "details#reasons summary").click()
    assert all(r.is_displayed() for r in reasons)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "{target}" not in text and "None" not in text
