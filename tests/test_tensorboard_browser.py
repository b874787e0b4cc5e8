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


def test_the_printed_address_shows_the_comparison_past_tensorboards_forty_runs(chromium, tiny_faces, tmp_path, capsys):
    """Over 40 runs TensorBoard's Images and Text pages tick none (any search of 30 trials writes 90): the
    address the report prints selects the report's runs, so its text and figures show without filtering."""
    import tensorflow as tf

    runs = str(tmp_path / "runs")
    train_cli.main(["--data-dir", tiny_faces, "--runs-dir", runs, "--experiment", "many", "--epochs", "1"]
                   + conftest.TINY)
    exp = os.path.join(runs, "many")
    for i in range(45):  # as many runs as a search's trials leave
        with tf.summary.create_file_writer(os.path.join(exp, "trials", f"trial-{i:02d}")).as_default():
            tf.summary.scalar("epoch_loss", 1.0 / (i + 1), step=0)
    capsys.readouterr()
    report_cli.main(["--runs-dir", runs, "--experiment", "many", "--no-timing"])
    printed = capsys.readouterr().out
    assert report_cli.comparison_url() in printed
    port = free_port()
    tensorboard = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", exp, "--host", "127.0.0.1",
                                    "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=90)
        browser = Browser(chromium)
        browser.open(report_cli.comparison_url(port))
        text = browser.wait_for(lambda t: t and "Comparison: experiment" in t, timeout=90)
        browser.screenshot(os.path.join(ARTIFACTS, "tensorboard-text-many-runs.png"))
        assert "Comparison: experiment" in text, "the report's text should show through the printed address"
        browser.open(report_cli.comparison_url(port, page="images"))
        drawn = browser.wait_for(lambda c: c and c["img"], timeout=90, js=COUNT_JS)
        browser.screenshot(os.path.join(ARTIFACTS, "tensorboard-images-many-runs.png"))
        assert drawn["img"] >= 1, f"no report figure was rendered: {drawn}"
    finally:
        if browser:
            browser.close()
        tensorboard.terminate()
        tensorboard.wait(timeout=30)
