"""Evaluation reports: numbers against a confusion matrix counted by hand, files, the page in a real browser."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from timesformer.report import build_report, write_report
from timesformer.report.plots import most_confused

NAMES = ["cat", "dog", "bird <&>"]
# 10 videos. True / predicted, counted by hand into the matrix below:
#   cat:  cat cat cat dog        -> row [3, 1, 0]
#   dog:  dog dog cat            -> row [1, 2, 0]
#   bird: bird dog bird          -> row [0, 1, 2]
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDICTED = [0, 0, 0, 1, 1, 1, 0, 2, 1, 2]
HAND_MATRIX = [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
# precision = diagonal / column sum, recall = diagonal / row sum:
#   cat  p 3/4  r 3/4  f1 3/4
#   dog  p 2/4  r 2/3  f1 2*(1/2)(2/3)/(1/2+2/3) = 4/7
#   bird p 2/2  r 2/3  f1 2*(1)(2/3)/(1+2/3) = 4/5
HAND_PER_CLASS = [(4, 0.75, 0.75, 0.75), (3, 0.5, 2 / 3, 4 / 7), (3, 1.0, 2 / 3, 0.8)]


def hand_scores() -> np.ndarray:
    """Logits whose argmax is PREDICTED; the wrong predictions get distinct, known confidences."""
    scores = np.zeros((10, 3), dtype=np.float32)
    for i, (p, margin) in enumerate(zip(PREDICTED, [1, 1, 1, 3.0, 1, 1, 1.0, 1, 2.0, 1])):
        scores[i, p] = margin
    return scores


@pytest.fixture
def report() -> dict:
    paths = [f"videos/{i}.mp4" for i in range(10)]
    return build_report(np.array(LABELS), hand_scores(), NAMES, paths, skipped=[("videos/x.mp4", "truncated")])


def test_report_numbers_match_the_hand_counted_matrix(report: dict):
    assert report["confusion_matrix"] == HAND_MATRIX
    assert report["count"] == 10 and report["top1"] == pytest.approx(7 / 10)
    assert report["top5"] == 1.0  # 3 classes: every label is in the top 3
    for row, (support, p, r, f1) in zip(report["per_class"], HAND_PER_CLASS):
        assert (row["support"], row["precision"], row["recall"], row["f1"]) == pytest.approx((support, p, r, f1))
    assert [row["name"] for row in report["per_class"]] == NAMES
    assert report["skipped"] == [{"path": "videos/x.mp4", "reason": "truncated"}]


def test_mistakes_are_ordered_by_confidence_with_softmax_scores(report: dict):
    # Wrong: video 3 (margin 3), 8 (margin 2), 6 (margin 1); softmax of [m, 0, 0] gives e^m / (e^m + 2).
    assert [m["path"] for m in report["mistakes"]] == ["videos/3.mp4", "videos/8.mp4", "videos/6.mp4"]
    assert [(m["true"], m["predicted"]) for m in report["mistakes"]] == [("cat", "dog"), ("bird <&>", "dog"), ("dog", "cat")]
    for m, margin in zip(report["mistakes"], (3.0, 2.0, 1.0)):
        assert m["score"] == pytest.approx(np.exp(margin) / (np.exp(margin) + 2), rel=1e-6)


def test_probability_scores_are_used_as_they_are():
    probs = np.array([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05]])
    report = build_report(np.array([0, 0]), probs, NAMES, ["a", "b"], scores_are_probabilities=True)
    assert report["mistakes"] == [{"path": "a", "true": "cat", "predicted": "dog", "score": pytest.approx(0.7)}]


def test_top5_counts_a_label_ranked_fifth_and_not_sixth():
    scores = np.tile(np.arange(8, dtype=np.float32)[::-1], (2, 1))  # class 0 highest ... class 7 lowest
    names = [str(i) for i in range(8)]
    assert build_report(np.array([4, 5]), scores, names, ["a", "b"])["top5"] == 0.5


def test_most_confused_picks_the_classes_with_most_errors():
    matrix = np.diag([50, 50, 50, 50])
    matrix[3, 1] = 7  # 3 -> 1: classes 1 and 3 carry the errors
    matrix[0, 2] = 1
    assert most_confused(matrix, 2).tolist() == [1, 3]


def test_files_hold_the_report(report: dict, tmp_path: Path):
    pytest.importorskip("matplotlib")
    written = write_report(report, tmp_path)
    assert sorted(p.name for p in written) == ["confusion_matrix.png", "per_class.csv", "report.html", "report.json"]
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    rows = list(csv.DictReader((tmp_path / "per_class.csv").open()))
    assert [r["class"] for r in rows] == NAMES
    assert [float(r["f1"]) for r in rows] == pytest.approx([0.75, 4 / 7, 0.8], abs=1e-6)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "report.html").read_text()
    assert "bird &lt;&amp;&gt;" in page and "bird <&>" not in page  # names are escaped
    assert "data:image/png;base64," in page
    for external in ("http://", "https://", "src=\"//"):
        assert external not in page  # nothing to fetch


def test_a_large_matrix_shows_the_most_confused_classes(tmp_path: Path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from timesformer.report.plots import confusion_png

    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(5, 10, 60)) + (rng.random((60, 60)) < 0.02)
    names = [f"class {i}" for i in range(60)]
    for shown, count in ((20, 20), (25, 60)):  # all 20; the 25 most-confused of 60
        (tmp_path / "m.png").write_bytes(confusion_png(matrix[:count, :count], names[:count], max_classes=25))
        height = Image.open(tmp_path / "m.png").size[1]
        # Rows keep a readable height (0.16 inch each at 100 dpi) for the classes shown.
        assert height == pytest.approx(100 * (0.16 * shown + 2.5), abs=2)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium installed (Debian: apt-get install chromium chromium-driver)")


def test_report_page_in_a_real_browser(report: dict, tmp_path: Path):
    pytest.importorskip("matplotlib")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    binary = _chromium()
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.skip("no chromedriver installed (Debian: apt-get install chromium-driver)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    write_report(report, tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((tmp_path / "report.html").as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        body = driver.find_element(By.TAG_NAME, "body").text
        for name in NAMES:
            assert name in body
        image = driver.find_element(By.CSS_SELECTOR, "img")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100

        def column(index: int) -> list[str]:
            return [row.find_elements(By.TAG_NAME, "td")[index].text
                    for row in driver.find_elements(By.CSS_SELECTOR, "#per-class tbody tr")]  # fmt: skip

        header = driver.find_elements(By.CSS_SELECTOR, "#per-class th")
        header[5].click()  # F1 ascending: dog 0.571, cat 0.750, bird 0.800
        assert column(1) == ["dog", "cat", "bird <&>"]
        header[5].click()
        assert column(1) == ["bird <&>", "cat", "dog"]
        header[1].click()  # names as text
        assert column(1) == sorted(NAMES, key=str.lower) or column(1) == ["bird <&>", "cat", "dog"]
    finally:
        driver.quit()
