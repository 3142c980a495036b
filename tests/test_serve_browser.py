"""The web page in a real browser: headless Debian chromium, driven by Selenium through /usr/bin/chromedriver,
uploads a clip to a live `spoofrl serve` app and must show the verdict, spectrogram and timeline."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("needs Debian chromium + chromium-driver (installed by scripts/install_system.sh)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e .[dev])")
uvicorn = pytest.importorskip("uvicorn", reason="needs the serve extras (pip install -e .[serve])")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_detect import crafted_model_dir, hiss, low_tone  # noqa: E402

from spoofrl.detect import load_detection_model  # noqa: E402
from spoofrl.serve import ServeLimits, create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    loaded = load_detection_model(crafted_model_dir(tmp_path_factory.mktemp("model")), "cpu")
    port = free_port()
    config = uvicorn.Config(create_app(loaded, ServeLimits(max_seconds=60)), host="127.0.0.1", port=port,
                            log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def upload_and_wait(browser, server_url: str, path: Path) -> str:
    browser.get(server_url + "/")
    WebDriverWait(browser, 30).until(lambda d: "Model:" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 60).until(EC.visibility_of_element_located((By.ID, "result")))
    return browser.find_element(By.ID, "verdict").text


def test_upload_shows_verdict_score_spectrogram_and_timeline(browser, server_url, tmp_path):
    path = tmp_path / "partly_fake.wav"
    sf.write(str(path), np.concatenate([low_tone(8.0), hiss(4.0), low_tone(4.0)]), 16000)
    verdict = upload_and_wait(browser, server_url, path)
    assert verdict in ("bonafide", "spoof")
    assert browser.find_element(By.ID, "filename").text == "partly_fake.wav"
    float(browser.find_element(By.ID, "score").text)  # a number is shown
    image = browser.find_element(By.ID, "spectrogram")
    assert image.is_displayed() and image.get_attribute("src").startswith("data:image/png;base64,")
    # The spectrogram image really decoded (naturalWidth is 0 for a broken image).
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 100
    segments = browser.find_elements(By.CSS_SELECTOR, "#timeline-bar div")
    assert [s.get_attribute("class") for s in segments] == ["seg-bonafide", "seg-bonafide", "seg-spoof",
                                                            "seg-bonafide"]


def test_clear_verdicts_and_an_error_message(browser, server_url, tmp_path):
    good = tmp_path / "tone.wav"
    sf.write(str(good), low_tone(2.0), 16000)
    assert upload_and_wait(browser, server_url, good) == "bonafide"
    fake = tmp_path / "hiss.wav"
    sf.write(str(fake), hiss(2.0), 16000)
    assert upload_and_wait(browser, server_url, fake) == "spoof"
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all\n" * 30)
    browser.get(server_url + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").text != "")
    assert "415" in browser.find_element(By.ID, "error").text
    assert "not a readable audio file" in browser.find_element(By.ID, "error").text
