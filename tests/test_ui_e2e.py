"""The web UI end to end in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium): every page renders with its overlays, a filter shrinks the grid to the right frames, a
tiny training run started from the UI grows its curve without a reload, and a model detects on an
uploaded image. Screenshots of each page go to ``tests/artifacts/ui/``."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_done_shard_frame
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "headless chromium + chromedriver not installed (apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (test extra)")
uvicorn = pytest.importorskip("uvicorn", reason="the ui extra (uvicorn) is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from synthloop.ui.app import create_app  # noqa: E402
from synthloop.ui.paint import class_colour  # noqa: E402
from synthloop.ui.security import LOOPBACK_HOSTS  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ui_workspace):
    port = _free_port()
    app = create_app(ui_workspace, allowed_hosts=LOOPBACK_HOSTS)  # as `synthloop ui` serves loopback
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(timeout=15)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()


def _shot(drv, name: str) -> None:
    drv.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _images_loaded(drv, css: str, timeout: float = 60) -> list:
    WebDriverWait(drv, timeout).until(
        lambda d: d.execute_script(
            "const im=[...document.querySelectorAll(arguments[0])];"
            "return im.length>0 && im.every(i=>i.complete && i.naturalWidth>0);",
            css,
        )
    )
    return drv.find_elements(By.CSS_SELECTOR, css)


def _has_colour(png: bytes, rgb: tuple[int, int, int], min_pixels: int = 20, tol: int = 40) -> bool:
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(a - np.array(rgb)).sum(-1) < tol).sum()) >= min_pixels


def _records(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "toy" / "records").glob("*.json"))}


def test_every_page_renders_and_the_overlays_are_drawn(server, browser, ui_workspace):
    recs = _records(ui_workspace)
    browser.get(server + "/")
    assert (
        "toy" in browser.page_source
        and "broken" in browser.find_element(By.CSS_SELECTOR, ".card.broken").text
    )
    _shot(browser, "home")
    browser.get(server + "/dataset?p=toy")
    thumbs = _images_loaded(browser, "#grid img")
    assert len(thumbs) == len(recs)
    _shot(browser, "dataset_grid")
    for img, (fid, rec) in zip(thumbs, recs.items(), strict=True):
        png = img.screenshot_as_png
        assert np.asarray(Image.open(io.BytesIO(png))).std() > 5, fid  # not blank
        for c in {o["category_id"] for o in rec["objects"]}:
            assert _has_colour(png, class_colour(c)), (fid, c)
    browser.get(server + "/frame?p=toy&i=1")
    overlay, depth = _images_loaded(browser, ".pics img")
    assert _has_colour(
        overlay.screenshot_as_png, class_colour(recs["000001"]["objects"][0]["category_id"]), 100
    )
    assert np.asarray(Image.open(io.BytesIO(depth.screenshot_as_png))).std() > 10
    assert "Scene parameters" in browser.page_source
    _shot(browser, "frame")
    pages = {
        "stats": "/stats?p=toy",
        "coco_grid": "/dataset?p=real/annotations.json",
        "job": "/job?p=job",
        "run": "/run?p=runs/r1",
        "model": "/model?p=runs/r1/checkpoints/last.pt",
        "actions": "/actions",
        "experiment": "/experiment?p=mix",
        "evaluation": "/experiment?p=runs/r1/eval",
        "models": "/section/models",
        "compare": "/compare?p=runs/r1",
    }
    for name, url in pages.items():
        browser.get(server + url)
        assert "synthloop" in browser.title and "Traceback" not in browser.page_source, name
        if name in ("run", "evaluation"):
            assert len(_images_loaded(browser, ".grid img")) == 2  # the worst-frame overlays
        if name == "coco_grid":
            assert len(_images_loaded(browser, "#grid img")) == 3
        if name == "run":
            WebDriverWait(browser, 20).until(
                lambda d: int(d.find_element(By.CSS_SELECTOR, ".npoints").text) >= 3
            )
        if name == "job":  # a frame finishing on disk shows up without a reload, with a rate and an ETA
            WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "job-done").text == "1")
            assert browser.find_element(By.ID, "job-failed").text == "1"
            browser.execute_script("window.__sameLoad = 1;")
            time.sleep(1.5)
            write_done_shard_frame(ui_workspace / "job" / "shards" / "0000", 1)
            WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "job-done").text == "2")
            assert browser.execute_script("return window.__sameLoad") == 1
            assert "frames/s" in browser.find_element(By.ID, "job-rate").text
            assert browser.find_element(By.ID, "job-eta").text != "–"
        _shot(browser, name)


def test_a_class_and_a_parameter_filter_shrink_the_grid_to_the_right_frames(server, browser, ui_workspace):
    recs = _records(ui_workspace)
    browser.get(server + "/dataset?p=toy")
    _images_loaded(browser, "#grid img")
    browser.find_element(By.CSS_SELECTOR, "input[name=cls][value='2']").click()
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 20).until(lambda d: "cls=2" in d.current_url)
    got = [e.get_attribute("data-frame") for e in browser.find_elements(By.CSS_SELECTOR, "#grid .thumb")]
    want = sorted(k for k, r in recs.items() if any(o["category_id"] == 2 for o in r["objects"]))
    assert got == want and len(want) < len(recs)
    Select(browser.find_elements(By.NAME, "param")[0]).select_by_value("scene.light")
    browser.find_elements(By.NAME, "pmin")[0].send_keys("0.25")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 20).until(lambda d: "scene.light" in d.current_url)
    got = [e.get_attribute("data-frame") for e in browser.find_elements(By.CSS_SELECTOR, "#grid .thumb")]
    assert got == [k for k in want if int(k) >= 3]
    _images_loaded(browser, "#grid img")
    _shot(browser, "dataset_filtered")


def test_a_training_run_started_here_grows_its_curve_without_a_reload(server, browser, ui_workspace):
    browser.get(server + "/actions")
    form = browser.find_element(By.ID, "form-train")
    Select(form.find_element(By.NAME, "spec")).select_by_visible_text("specs/tiny.yaml")
    out = form.find_element(By.NAME, "out")
    out.clear()
    out.send_keys("runs/live")
    form.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(browser, 20).until(lambda d: "/action?id=" in d.current_url)
    action_url = browser.current_url
    browser.find_element(By.LINK_TEXT, "watch the run").click()
    WebDriverWait(browser, 20).until(lambda d: "/run?p=runs" in d.current_url)
    browser.execute_script("window.__sameLoad = 1;")
    npoints = lambda d: int(d.find_element(By.CSS_SELECTOR, ".npoints").text)  # noqa: E731
    WebDriverWait(browser, 240, poll_frequency=0.5).until(lambda d: npoints(d) >= 1)
    first = npoints(browser)
    WebDriverWait(browser, 240, poll_frequency=0.5).until(lambda d: npoints(d) > first)
    assert browser.execute_script("return window.__sameLoad") == 1  # no reload happened
    time.sleep(1)
    _shot(browser, "run_live")
    ckpt = ui_workspace / "runs" / "live" / "checkpoints" / "last.pt"
    WebDriverWait(browser, 240, poll_frequency=1).until(lambda d: ckpt.exists())
    browser.get(server + "/section/runs")
    WebDriverWait(browser, 30).until(lambda d: "runs/live" in d.page_source)  # the run started here is listed
    _shot(browser, "runs")
    browser.get(action_url)  # its log streamed to the page, and it ended well
    WebDriverWait(browser, 240, poll_frequency=1).until(
        lambda d: d.find_element(By.ID, "action-state").text == "done"
    )
    assert '"kind": "train"' in browser.find_element(By.ID, "log").text
    assert not browser.find_element(By.ID, "cancel").is_enabled()
    _shot(browser, "action")


def test_an_uploaded_image_comes_back_with_the_model_s_boxes(server, browser, ui_workspace):
    browser.get(server + "/model?p=runs/r1/checkpoints/last.pt")
    browser.find_element(By.ID, "try-file").send_keys(str(ui_workspace / "toy" / "images" / "000001.png"))
    score = browser.find_element(By.ID, "try-score")
    score.clear()
    score.send_keys("0")
    browser.find_element(By.ID, "try-run").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.ID, "try").get_attribute("data-count") is not None
    )
    n = int(browser.find_element(By.ID, "try").get_attribute("data-count"))
    assert n > 0
    result = _images_loaded(browser, "#try-result")[0]
    labels = {ln.split()[0] for ln in browser.find_element(By.ID, "try-dets").text.splitlines()}
    assert labels == {"date"}  # the fixture's detector sees class 1 everywhere
    assert _has_colour(result.screenshot_as_png, class_colour(1), 30, 10)
    _shot(browser, "model_try")
