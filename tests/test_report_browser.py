"""The report checked as a reader's browser sees it (issue 9, item 14).

Structural checks always run: no script, no address of any kind, every in-page reference
resolves, every figure holds an inline SVG. Then, where Chromium is installed (Debian:
``apt-get install chromium``; or set ``BNSTUDY_CHROMIUM``), the page is opened in headless
Chromium over the DevTools protocol (``--remote-debugging-pipe``, no port): no console
message or uncaught error, no request but the file itself, every figure laid out with a size,
and a screenshot that is not blank. Set ``BNSTUDY_SCREENSHOTS=DIR`` to keep the screenshots.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from bnstudy.report import content, render
from test_report import PageStructure, simulated_with_detail

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    explicit = os.environ.get("BNSTUDY_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    protocol, table, analysis = simulated_with_detail()
    html = render(analysis, table, protocol, {"protocol_sha256": protocol.sha256})
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(html, encoding="utf-8")
    ids = [f.id for f in content.build(analysis, table, protocol).figures]
    return path, html, ids


# -- structural checks: no browser needed -------------------------------------------------

#: Attributes that make a browser fetch (or navigate to) what they name.
_URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "poster", "srcset",
                   "background", "data", "ping", "manifest", "cite", "longdesc"}  # fmt: skip
_CSS_URL = re.compile(r"url\(\s*['\"]?(?!#)([^)'\"]*)", re.I)
_REFERENCE = re.compile(r"""(?:url\(\s*|href=["'])#([^)"'\s]+)""")


def test_page_needs_nothing_from_outside_and_every_reference_resolves(report):
    _, html, ids = report
    assert "<script" not in html.lower()
    page = PageStructure(html)
    handlers = [(t, k) for t, k, _ in page.attributes if k.lower().startswith("on")]
    assert not handlers, f"event-handler attributes {handlers[:3]}"
    outside = [
        (t, k, v)
        for t, k, v in page.attributes
        if k.lower() in _URL_ATTRIBUTES and not v.startswith("#")
    ]
    assert not outside, f"attributes pointing outside the page: {outside[:3]}"
    styles = " ".join(v for _, k, v in page.attributes if k == "style")
    assert not _CSS_URL.findall(styles), "an inline style url() pointing outside the page"
    css = html.split("<style>")[1].split("</style>")[0]
    assert not _CSS_URL.findall(css), "a CSS url() pointing outside the page"
    assert "@import" not in html
    assert not re.search(r"\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}", html, re.I)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids (figures must not share ids)"
    unresolved = sorted(set(_REFERENCE.findall(html)) - set(page.ids))
    assert not unresolved, unresolved[:5]
    assert list(page.figures) == ids and all(page.figures.values())


def test_screenshot_check_detects_a_blank_image():
    assert not non_blank(np.full((100, 100, 3), 255, np.uint8))
    drawn = np.full((100, 100, 3), 255, np.uint8)
    drawn[20:80, 10:90] = (30, 60, 200)
    assert non_blank(drawn)


def non_blank(pixels: np.ndarray) -> bool:
    """More than 2% of the pixels differ clearly from the background (the corner pixel)."""
    background = pixels[0, 0].astype(int)
    inked = np.any(np.abs(pixels.astype(int) - background) > 16, axis=-1)
    return bool(inked.mean() > 0.02)


# -- in the browser -------------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, executable: str, width: int = 1300):
        self._profile = tempfile.mkdtemp(prefix="bnstudy-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the protocol's fixed descriptors
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing could load even if asked
            f"--user-data-dir={self._profile}",
            f"--window-size={width},1000",
            "--hide-scrollbars",
            "about:blank",
        ]
        self._proc = subprocess.Popen(
            args,
            preexec_fn=wire,
            close_fds=False,  # fds 3 and 4 must survive; os.pipe() ends are not inherited
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []
        self.width = width
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.call(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=self.session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=self.session,
        )

    def _read(self, until, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if until(message):
                    return message
                self.events.append(message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the browser")
            ready, _, _ = select.select([self._from_browser], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed the protocol pipe")
                self._buffer += chunk

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        answer = self._read(lambda m, i=self._id: m.get("id") == i, timeout=60)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=self.session)
        self._read(lambda m: m.get("method") == "Page.loadEventFired", timeout=60)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            session=self.session,
        )
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        import base64

        size = self.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": self.width, "height": size["height"], "scale": 1},
            },
            session=self.session,
        )
        return base64.b64decode(shot["data"])

    def problems(self) -> dict[str, list[str]]:
        """Console messages, uncaught errors, log errors and every request made."""
        out: dict[str, list[str]] = {"console": [], "exceptions": [], "log": [], "requests": []}
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params["args"]
                )
                out["console"].append(f"{params['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                out["exceptions"].append(params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                out["log"].append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                out["requests"].append(params["request"]["url"])
        return out

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        pytest.skip(
            "chromium not installed: apt-get install chromium (or set BNSTUDY_CHROMIUM) to "
            "check the report in a real browser; the structural checks ran without it"
        )
    chrome = Chromium(executable)
    yield chrome
    chrome.close()


_FIGURE_BOXES = """JSON.stringify([...document.querySelectorAll('figure')].map(f => {
  const svg = f.querySelector(':scope > svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0, right: 0};
  return {id: f.id, width: box.width, height: box.height, right: box.right,
          text: svg ? svg.querySelectorAll('text').length : 0};
}))"""


def test_checks_catch_console_errors_and_requests(browser, tmp_path):
    """The detectors work: a page that logs an error and asks for an image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><title>bad</title><img src='http://bnstudy.invalid/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script>"
    )
    browser.events.clear()
    browser.open(bad.as_uri())
    found = browser.problems()
    assert any("boom" in c for c in found["console"])
    assert found["exceptions"]
    assert any(u.startswith("http://bnstudy.invalid") for u in found["requests"])


def test_report_in_chromium(browser, report):
    path, _, ids = report
    browser.events.clear()
    browser.open(path.as_uri())
    time.sleep(0.2)  # late events (a resource requested after load) arrive with the next read
    boxes = json.loads(browser.evaluate(_FIGURE_BOXES))
    shot = browser.screenshot()
    found = browser.problems()
    assert found["console"] == [] and found["exceptions"] == [] and found["log"] == []
    assert found["requests"] == [path.as_uri()], "the page asked for something else"
    assert [b["id"] for b in boxes] == ids, "figures missing from the rendered page"
    body_width = browser.evaluate("document.body.getBoundingClientRect().right")
    for b in boxes:
        assert b["width"] > 100 and b["height"] > 60, b
        assert b["right"] <= body_width + 1, f"{b['id']} overflows the page"
        assert b["text"] > 3, f"{b['id']} has no text (axes labels, ticks)"
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(shot)).convert("RGB")
    assert image.width == browser.width and image.height > 3000
    assert non_blank(np.asarray(image))
    keep = os.environ.get("BNSTUDY_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "report.png").write_bytes(shot)


def test_print_layout_in_chromium(browser, report, tmp_path):
    """Printed, the page keeps every figure (and produces a PDF at all)."""
    import base64

    path, _, ids = report
    browser.open(path.as_uri())
    pdf = browser.call(
        "Page.printToPDF",
        {"printBackground": False, "preferCSSPageSize": False},
        session=browser.session,
    )
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF") and len(data) > 50_000
    browser.call("Emulation.setEmulatedMedia", {"media": "print"}, session=browser.session)
    try:
        boxes = json.loads(browser.evaluate(_FIGURE_BOXES))
        assert [b["id"] for b in boxes] == ids and all(b["height"] > 60 for b in boxes)
        toc = browser.evaluate("getComputedStyle(document.querySelector('.scroll')).overflowX")
        assert toc == "visible"
    finally:
        browser.call("Emulation.setEmulatedMedia", {"media": ""}, session=browser.session)


_VERDICT_BOXES = """JSON.stringify([...document.querySelectorAll('table')].flatMap(t => {
  const box = t.closest('.scroll').getBoundingClientRect();
  return [...t.querySelectorAll('th')].filter(h => /verdict/.test(h.textContent)).map(h => ({
    header: h.textContent, right: h.getBoundingClientRect().right, visible: box.right}));
}))"""


def test_verdict_columns_are_in_view_at_1300_px(browser, report):
    """The verdict is the column that matters: on a 1,300 px window no table may scroll it
    out of view (it sat last in the estimates and equivalence tables)."""
    path, *_ = report
    browser.open(path.as_uri())
    boxes = json.loads(browser.evaluate(_VERDICT_BOXES))
    headers = [b["header"] for b in boxes]
    # the estimates, the ok-only estimates, equivalence, and the two populations side by side
    assert headers.count("verdict") >= 3 and "ok only verdict" in headers
    for b in boxes:
        assert b["right"] <= b["visible"] + 1, b
