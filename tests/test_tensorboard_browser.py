"""TensorBoard in a real browser: the comparison's HParams table lists every model, a scalar chart and an
image render. Chromium is installed by the set-up where missing (Debian's package, as root); the test is
skipped, saying why, only where no browser can be had. Screenshots are kept in test-artifacts/."""
import os
import shutil
import subprocess
import sys

import pytest

from browser import COUNT_JS, Browser, free_port, install_chromium, wait_http
from classifiers import train as train_cli
import conftest
from compare import report as report_cli

pytestmark = pytest.mark.end_to_end  # trains through the kit's commands (pyproject.toml: markers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")


@pytest.fixture(scope="module")
def chromium():
    path, reason = install_chromium()
    if not path:
        pytest.skip(f"no browser: {reason}")
    return path


def test_tensorboard_shows_every_model(chromium, tiny_faces, tmp_path):
    runs = str(tmp_path / "runs")
    train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--experiment", "tb", "--epochs", "2"] + conftest.TINY)
    exp = os.path.join(runs, "tb")
    shutil.copytree(os.path.join(exp, "baseline"), os.path.join(exp, "second-model"))
    report_cli.main(["--runs-dir", runs, "--experiment", "tb", "--no-timing"])
    os.makedirs(ARTIFACTS, exist_ok=True)
    port = free_port()
    tensorboard = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", exp, "--host", "127.0.0.1",
                                    "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=90)
        browser = Browser(chromium)
        browser.open(f"http://127.0.0.1:{port}/#hparams")
        text = browser.wait_for(lambda t: t and "baseline" in t and "second-model" in t, timeout=90)
        browser.screenshot(os.path.join(ARTIFACTS, "tensorboard-hparams.png"))
        assert "baseline" in text and "second-model" in text, "the HParams table should list every model"

        browser.open(f"http://127.0.0.1:{port}/#scalars")
        drawn = browser.wait_for(lambda c: c and (c["chart_marks"] or c["canvas"]), timeout=90, js=COUNT_JS)
        browser.screenshot(os.path.join(ARTIFACTS, "tensorboard-scalars.png"))
        assert drawn["chart_marks"] or drawn["canvas"], f"no scalar chart was drawn: {drawn}"

        browser.open(f"http://127.0.0.1:{port}/#images")
        drawn = browser.wait_for(lambda c: c and c["img"], timeout=90, js=COUNT_JS)
        browser.screenshot(os.path.join(ARTIFACTS, "tensorboard-images.png"))
        assert drawn["img"] >= 1, f"no image was rendered: {drawn}"
    finally:
        if browser:
            browser.close()
        tensorboard.terminate()
        tensorboard.wait(timeout=30)
