"""`cotctl report` over a three-arm study (one arm of two training seeds), opened in headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium): it renders with no console error and no network request, its
table holds compare's numbers, its heat map has one cell per arm and problem, clicking a cell shows that problem's
samples (an arm's seeds pooled), and screenshots of it are written under tests/artifacts/report-page/ (or
$COTLAB_TEST_ARTIFACTS) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotlab.cli.analysis.gather import cut_text, natural_key
from cotlab.cli.main import app
from tests.conftest import REPO

from .cli_state import finished_eval, finished_traces, finished_tune, write_benchmark

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium package (.ci/run installs it)
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver, the same version
SELECTOR = "cotlab.dev/experiment=study"
PROBLEMS = 12
SAMPLES = 8
runner = CliRunner()


def artifacts_dir() -> Path:
    found = Path(os.environ.get("COTLAB_TEST_ARTIFACTS", REPO / "tests" / "artifacts")) / "report-page"
    found.mkdir(parents=True, exist_ok=True)
    return found


GOLD = {f"p{i}": str(7 * i) for i in range(1, PROBLEMS + 1)}


def answers(solved: dict[int, int]) -> dict[str, list[str | None]]:
    """Problem p<i> gets solved[i] correct samples of SAMPLES (0 if absent); the others a wrong or no answer."""
    out: dict[str, list[str | None]] = {}
    for i in range(1, PROBLEMS + 1):
        right = solved.get(i, 0)
        out[f"p{i}"] = [GOLD[f"p{i}"]] * right + [None if k % 3 == 0 else str(k + 1) for k in range(SAMPLES - right)]
    return out


# What the study found, in miniature: the base model solves little, 20 human traces help a bit, 20 QwQ traces a lot.
# One solved-count table per EvalRun: the human arm is trained twice (training seeds 0 and 1), one arm of two runs.
ARMS = {
    "base": [{1: 3, 2: 2, 3: 1}],
    "human": [{1: 5, 2: 4, 3: 3, 4: 2, 5: 1}, {1: 6, 2: 3, 3: 2, 4: 3}],
    "qwq": [{1: 8, 2: 8, 3: 7, 4: 7, 5: 6, 6: 6, 7: 5, 8: 4, 9: 3, 10: 2}],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    bench = write_benchmark(root / "comp.jsonl", GOLD)
    for arm, runs in ARMS.items():
        labels = {"cotlab.dev/experiment": "study", "cotlab.dev/arm": arm}
        if arm != "base":
            stages = {"human_stage1": 20} if arm == "human" else {"qwq_32b_preview": 20}
            finished_traces(root / "state", f"{arm}-20", p50=900 if arm == "human" else 4200, count=20, stages=stages)
        for seed, solved in enumerate(runs):
            suffix = f"-s{seed}" if len(runs) > 1 else ""
            tune = None
            if arm != "base":
                start = (1.4 if arm == "human" else 1.1) + 0.1 * seed
                losses = [round(start * 0.9**k + 0.2, 6) for k in range(30)]
                tune = f"tune-{arm}{suffix}"
                finished_tune(root / "state", tune, f"{arm}-20", training={"seed": seed}, losses=losses)
            finished_eval(
                root / "state", f"study-{arm}{suffix}", bench, GOLD, answers(solved), labels=labels, tune=tune
            )
    return root / "state"


def cotctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def page(study: Path) -> Path:
    out = artifacts_dir() / "report.html"
    made = cotctl("report", "--local", "--root", str(study), "-l", SELECTOR, "--rows", "label:cotlab.dev/arm",
                  "--baseline", "base", "-o", str(out))  # fmt: skip
    assert made.exit_code == 0, made.output
    return out


@pytest.fixture(scope="module")
def compared(study: Path) -> dict[str, Any]:
    done = cotctl("compare", "--local", "--root", str(study), "-l", SELECTOR, "--rows", "label:cotlab.dev/arm",
                  "--baseline", "base", "-o", "json")  # fmt: skip
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def browser(page: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--hide-scrollbars"):
        options.add_argument(flag)  # --no-sandbox: the tests run as root, which Chromium's sandbox refuses
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        driver.get(page.as_uri())
        yield driver
    finally:
        driver.quit()


def test_the_page_is_one_file_with_nothing_to_fetch(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<iframe|<img|\bsrc=|@import|url\((?!#)", html)
    assert not re.search(r"""href=["'](?!#)""", html)  # links are in-page anchors only
    assert html.count("<svg") == 1 + 1 + 1  # compare's plot, the heat map (one benchmark), the training curves


def test_renders_without_console_errors_or_network_requests(browser: Any, page: Path) -> None:
    severe = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert severe == []
    requested = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert requested == [page.as_uri()]  # the document itself, nothing else
    assert browser.title == f"cotlab report: {SELECTOR}"


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]?\d+\.\d+", text)]


def test_the_table_holds_compares_numbers(browser: Any, compared: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    table = browser.find_element(By.ID, "score-table")
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert len(rows) == len(compared["rows"]) == 3
    assert [(r["label"], r["trainingSeeds"]) for r in compared["rows"]] == [
        ("base", []),
        ("human", [0, 1]),
        ("qwq", [0]),
    ]
    for row, want in zip(rows, compared["rows"], strict=True):
        cells = dict(zip(headers, row, strict=True))
        assert cells["row"].removesuffix(" (baseline)") == want["label"]
        for benchmark in compared["benchmarks"]:
            for metric, cell in want["scores"][benchmark].items():
                expected = [cell["value"]] + ([cell["stderr"]] if metric.startswith("pass") else [])
                assert _numbers(cells[f"{benchmark} {metric}"]) == [round(100 * x, 1) for x in expected]
            delta = want["differences"].get(benchmark)
            if delta is not None:
                got = cells[f"{benchmark} Δ{compared['metric']}"]
                level = f" at {100 * delta['level']:.4g}%"  # the corrected interval's level (Holm)
                assert level in got and got.count("%") == 1
                assert _numbers(got.replace(level, "")) == [round(100 * delta[k], 1) for k in ("value", "low", "high")]
                assert got.endswith("not significant") != delta["significant"]
    qwq = compared["rows"][2]
    assert qwq["label"] == "qwq" and qwq["differences"]["comp"]["significant"]  # what the study found


def test_one_heat_map_cell_per_arm_and_problem(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    cells = browser.find_elements(By.CSS_SELECTOR, '[id^="heat-"]')
    assert len(cells) == len(ARMS) * PROBLEMS
    assert sorted(c.get_attribute("id") for c in cells) == sorted(
        f"heat-{a}-0-{p}" for a in range(len(ARMS)) for p in range(PROBLEMS)
    )


def test_clicking_a_cell_shows_that_problems_samples(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    panel = browser.find_element(By.ID, "cell-2-0-3")  # qwq (third row) on p4 (problems in id order)
    assert not panel.is_displayed()
    browser.find_element(By.ID, "heat-2-0-3").click()
    assert browser.current_url.endswith("#cell-2-0-3") and panel.is_displayed()
    assert "qwq · comp · problem p4" in panel.text
    assert "7 of 8 samples correct; gold answer: 28" in panel.text
    assert "Problem p4?" in panel.text  # the problem itself, from the benchmark file
    completions = [d.text for d in panel.find_elements(By.CSS_SELECTOR, "details.sample pre")]
    assert completions == ["... \\boxed{28}"] * 4  # the first four samples' texts (--samples-per-cell 4)
    grades = [tr.find_elements(By.TAG_NAME, "td")[2].text for tr in panel.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert grades == ["correct"] * 7 + ["wrong"]  # every sample's grade is listed
    browser.save_screenshot(str(artifacts_dir() / "report-cell.png"))
    browser.find_element(By.CSS_SELECTOR, "#cell-2-0-3 a.close").click()
    assert not panel.is_displayed()


def test_an_arm_of_seeds_pools_their_samples_and_shows_each_seeds_curve(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "heat-1-0-0").click()  # human (two seeds) on p1
    panel = browser.find_element(By.ID, "cell-1-0-0")
    assert "human · comp · problem p1" in panel.text and "11 of 16 samples correct; gold answer: 7" in panel.text
    headers = [th.text for th in panel.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in panel.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    listed = [(r[headers.index("training seed")], r[headers.index("evalrun")], r[headers.index("grade")]) for r in rows]
    assert listed == (
        [("0", "study-human-s0", "correct")] * 5 + [("0", "study-human-s0", "wrong")] * 3
        + [("1", "study-human-s1", "correct")] * 6 + [("1", "study-human-s1", "wrong")] * 2
    )  # fmt: skip
    summaries = [d.text for d in panel.find_elements(By.CSS_SELECTOR, "details.sample summary")]
    assert summaries == [f"seed {s}, sample {i}: 7 — correct" for s in (0, 1) for i in (0, 1)]  # 4 shared out
    browser.find_element(By.CSS_SELECTOR, "#cell-1-0-0 a.close").click()
    curves = browser.find_element(By.ID, "curve-table")
    found = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")][:3]
        for tr in curves.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert found == [["tune-human-s0", "human", "0"], ["tune-human-s1", "human", "1"], ["tune-qwq", "qwq", "0"]]


def test_a_full_page_screenshot_is_written(browser: Any) -> None:
    height = browser.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
    browser.set_window_size(1400, height)
    shot = artifacts_dir() / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000


@pytest.mark.parametrize(
    ("ids", "ordered"),
    [
        (["p10", "p2", "p1"], ["p1", "p2", "p10"]),
        (["aime25-3", "aime24-12", "aime24-2"], ["aime24-2", "aime24-12", "aime25-3"]),
    ],
    ids=["numbers", "prefixed"],
)
def test_problems_are_in_a_stable_human_order(ids: list[str], ordered: list[str]) -> None:
    assert sorted(ids, key=natural_key) == ordered


def test_a_long_completion_keeps_its_start_and_its_end() -> None:
    text = "a" * 1000 + "b" * 1000 + "c" * 1000
    assert cut_text(text) == "a" * 600 + "\n… [1000 characters cut] …\n" + "b" * 400 + "c" * 1000
    assert cut_text("short") == "short"
