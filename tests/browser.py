"""A headless Chromium driven over the DevTools protocol: enough to load a page, read every text node
(through shadow roots and same-origin frames, where TensorBoard's dashboards live) and take a screenshot."""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000"]

# Collects the text of the page, descending into shadow roots and same-origin iframes.
ALL_TEXT_JS = """
(() => {
  const out = [];
  const walk = (node) => {
    if (!node) return;
    if (node.nodeType === 3) { out.push(node.textContent); return; }
    if (node.shadowRoot) walk(node.shadowRoot);
    if (node.tagName === 'IFRAME') { try { walk(node.contentDocument); } catch (e) {} }
    for (const child of node.childNodes || []) walk(child);
  };
  walk(document);
  return out.join(' ');
})()
"""

# Counts what has really been drawn: plotted series (the line or point marks of TensorBoard's line
# charts, or a WebGL canvas) and loaded images, including inside shadow roots.
COUNT_JS = """
(() => {
  const counts = {chart_marks: 0, canvas: 0, img: 0};
  const walk = (node) => {
    if (!node) return;
    if (node.shadowRoot) walk(node.shadowRoot);
    if (node.tagName === 'IFRAME') { try { walk(node.contentDocument); } catch (e) {} }
    const cls = (node.getAttribute && node.getAttribute('class')) || '';
    if (node.tagName === 'path' && /\\b(line|symbol)\\b/.test(cls) && (node.getAttribute('d') || '').length > 5)
      counts.chart_marks++;
    if (node.tagName === 'CANVAS' && node.width > 0 && node.height > 0) counts.canvas++;
    if (node.tagName === 'IMG' && node.complete && node.naturalWidth > 0) counts.img++;
    for (const child of node.childNodes || []) walk(child);
  };
  walk(document);
  return counts;
})()
"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium():
    """Debian's chromium, installed when missing and we may (root with apt-get). Returns a path or a reason."""
    path = find_chromium()
    if path:
        return path, None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "no chromium on this machine and no root apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode:
            return None, f"could not install chromium ({' '.join(cmd)}: {proc.stderr.strip()[-200:]})"
    return find_chromium(), None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Browser:
    def __init__(self, chromium):
        import websocket

        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={self.port}",
                                      f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets = json.loads(wait_http(f"http://127.0.0.1:{self.port}/json"))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url):
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, js):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value")

    def wait_for(self, predicate, timeout=60, js=ALL_TEXT_JS):
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = self.evaluate(js)
            if predicate(value):
                return value
            time.sleep(0.5)
        return value

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)
