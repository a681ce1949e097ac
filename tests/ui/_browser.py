"""Helpers of the dashboard's browser tests: the app served on a loopback port by uvicorn in a
thread, Debian's Chromium driven by Playwright, screenshots, and the vendored axe-core.

No browser is ever downloaded: Playwright launches /usr/bin/chromium by path (`.ci/run` installs
it); without it the browser tests skip, and CI turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
VIEWPORT = {"width": 1280, "height": 800}


@contextlib.contextmanager
def serve(app):
    """Serve `app` on 127.0.0.1 at a free port (uvicorn in a thread); yields the base URL.

    The listening socket is bound here and handed to uvicorn, so no other process can take the
    port between choosing it and serving on it.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="ui-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start under uvicorn")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def sign_in(page, base: str, token: str, next_path: str = "/runs") -> None:
    """Sign `page` in through the form, as a person would: type the token, press the button."""
    page.goto(f"{base}/signin?next={next_path}")
    page.fill("#token", token)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_load_state("load")


def screenshots_dir(default: Path) -> Path:
    """Where screenshots go: $TRUSTFORGE_UI_SCREENSHOTS, else `default` (the test's tmp_path)."""
    folder = Path(os.environ.get("TRUSTFORGE_UI_SCREENSHOTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot of `page` as `folder/name.png`; returns its path.

    Also checks the layout: at the test viewport's width (1280 px) nothing may push the page
    sideways (a wide table belongs in a scrolling box, not in a page that scrolls right).
    """
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 0, f"the {name} page is {wide}px wider than the window (screenshot: {path})"
    return path


def is_placeholder(page) -> bool:
    """True when the page is still the skeleton's "being built" placeholder."""
    return page.locator("main p", has_text="This page is being built.").count() > 0


def axe_violations(page, *, min_impact: str = "serious") -> list[dict]:
    """Run axe-core on `page` (its context must carry `AXE` as an init script); the violations of
    `min_impact` or worse, each as {id, impact, help, nodes: [target :: failure summary]}."""
    assert page.evaluate("typeof axe") == "object", "axe-core is not loaded: context.add_init_script(path=AXE)"
    result = page.evaluate("async () => (await axe.run(document)).violations")
    order = ["minor", "moderate", "serious", "critical"]
    floor = order.index(min_impact)
    out = []
    for v in result:
        if v.get("impact") in order and order.index(v["impact"]) >= floor:
            nodes = [" ".join(map(str, n.get("target", []))) + " :: " + (n.get("failureSummary") or "")[:300] for n in v["nodes"][:5]]
            out.append({"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": nodes})
    return out


def record_drift(registry, folder: Path) -> None:
    """Drift windows for models:/iris-ui@champion, as `trustforge monitor` records them: one file
    like the training data, one with a feature shifted (so some windows drift)."""
    from sklearn.datasets import load_iris

    from trustforge.monitor import check_drift

    frame = load_iris(as_frame=True).frame.drop(columns="target").sample(frac=1.0, random_state=5).reset_index(drop=True)
    frame.to_csv(folder / "same.csv", index=False)
    frame["petal length (cm)"] = frame["petal length (cm)"] + 3.0
    frame.to_csv(folder / "shifted.csv", index=False)
    for name in ("same.csv", "shifted.csv"):
        check_drift("models:/iris-ui@champion", folder / name, registry=registry, window=50)
