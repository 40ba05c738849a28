"""The page `timesformer serve` ships, in real headless Chromium (Debian's `chromium` +
`chromium-driver`, driven by Selenium): upload a made video, read the top label from the
bars, see the attention overlay and the timeline of a long video, no console errors; then
upload a text file and read the error message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
pytest.importorskip("multipart", reason="the serve extra (python-multipart) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
    pytest.skip("Chromium is absent (apt-get install chromium chromium-driver)", allow_module_level=True)

from brokenfiles import good_mp4, text_file  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import TINY, ThreadedServer  # noqa: E402

from timesformer.data.labels import kinetics400_label_file, read_labels  # noqa: E402
from timesformer.data.pipeline import preprocess  # noqa: E402
from timesformer.model.checkpoints import load_model, save_model  # noqa: E402
from timesformer.model.timesformer import build_model  # noqa: E402
from timesformer.serve import ModelService, ServeOptions, create_app  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # Chromium leaves its singleton socket folder in TMPDIR: keep it in pytest's temporary tree.
    env = {**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("chromium"))}
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER, env=env))
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_page_shows_top5_overlay_timeline_and_errors(browser, tmp_path):
    torch.manual_seed(0)
    save_model(build_model(**TINY), tmp_path / "tiny.safetensors")
    clip = good_mp4(tmp_path / "square.mp4", frames=24, size=(48, 40), seed=1)
    long = good_mp4(tmp_path / "long.mp4", frames=250, size=(40, 32), fps=25, seed=3)  # 10 s, clips of 4.3 s
    notes = text_file(tmp_path / "notes.txt")
    with torch.no_grad():
        tensor = preprocess(clip, num_seg=4, short_side_min=32, short_side_max=32, crop_size=32)
        top = int(load_model(tmp_path / "tiny.safetensors")(tensor).mean(0).argmax())
    expected_label = read_labels(kinetics400_label_file())[top]

    service = ModelService.load(weights=tmp_path / "tiny.safetensors")
    with ThreadedServer(create_app(service, ServeOptions())) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        file_input = browser.find_element(By.ID, "file-input")

        file_input.send_keys(str(clip))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 5)
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#bars .bar .label")]
        assert labels[0] == expected_label
        wait.until(lambda d: d.execute_script("const i = document.getElementById('overlay'); return i.complete && i.naturalWidth > 0"))
        assert not browser.find_element(By.ID, "timeline-box").is_displayed()  # one clip long: no timeline

        file_input.send_keys(str(long))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline .segment")) == 2)
        assert console_errors(browser) == []

        file_input.send_keys(str(notes))
        error = wait.until(lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed() else None)
        assert "notes.txt" in error.text and "not a video" in error.text


def test_page_asks_for_the_token(browser, tmp_path):
    torch.manual_seed(0)
    save_model(build_model(**TINY), tmp_path / "tiny.safetensors")
    clip = good_mp4(tmp_path / "square.mp4", frames=24, size=(48, 40), seed=1)
    service = ModelService.load(weights=tmp_path / "tiny.safetensors")
    with ThreadedServer(create_app(service, ServeOptions(token="s3cret"))) as url:
        browser.get(url + "/")
        browser.execute_script("sessionStorage.clear()")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "classes" in d.find_element(By.ID, "model").text)  # /healthz needs no token
        browser.find_element(By.ID, "file-input").send_keys(str(clip))
        wait.until(lambda d: d.find_element(By.ID, "token-box").is_displayed())
        assert "token" in browser.find_element(By.ID, "error").text
        browser.find_element(By.ID, "token").send_keys("s3cret")
        browser.find_element(By.ID, "token-save").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 5)
        assert not browser.find_element(By.ID, "error").is_displayed()
