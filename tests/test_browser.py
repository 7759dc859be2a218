"""The Dagster UI on the built smoke graph, seen through a headless browser.

`dagster-webserver` is started on 127.0.0.1 against the session's (persistent) instance and data root of
`built`; Debian's headless Chromium takes screenshots of the asset graph, of `genixer_vqa`'s latest
materialisation with its previews (the thumbnail in the table, the full figure in its dialog) and of one of its checks,
into the test artefacts folder
(``$GENIXER_TEST_ARTIFACTS`` or ``test-artifacts/`` at the repository root, under ``browser/``). What the
pages show is asserted through the webserver's GraphQL API (the data the UI renders) and through the
rendered pages' text (Chromium driven over the DevTools protocol, which waits for the React UI to render
and clicks the preview open). `.ci/run` installs Chromium (`.ci/browser.sh`); the test installs it the same
way when it is missing, and skips, saying why, only when it cannot be installed.
"""
import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ("genixer_vqa", "genixer_rec", "base_mllm")
CHECK = "genixer_vqa_not_empty"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_chromium() -> str | None:
    env = os.environ.get("GENIXER_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's binary; installed from Debian's packages through .ci/browser.sh when missing."""
    found = _find_chromium()
    if found:
        return found
    p = subprocess.run(["bash", "-c", f"source {ROOT / '.ci' / 'browser.sh'} && browser_install"],
                       capture_output=True, text=True, timeout=900)
    found = _find_chromium()
    if not found:
        pytest.skip(f"no Chromium binary ({', '.join(BROWSERS)}) on PATH and it could not be installed "
                    f"(.ci/browser.sh exit {p.returncode}): {p.stderr.strip()[-400:]}")
    return found


@pytest.fixture(scope="module")
def artifacts() -> Path:
    d = Path(os.environ.get("GENIXER_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "browser"
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*"):  # no stale screenshot from an earlier run passes for this one's
        f.unlink()
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(built, instance, artifacts):
    """`dagster-webserver` on 127.0.0.1 over the instance and data root the graph was built in; its URL."""
    settings, _ = built
    home = instance.root_directory
    assert home and Path(home).is_dir(), "the session instance must be persistent for a webserver to read it"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENIXER_EXECUTOR", "GENIXER_INBOX"))}
    env.update(DAGSTER_HOME=str(home), GENIXER_PRESET=settings.preset, GENIXER_DATA_DIR=str(settings.data_dir))
    exe = Path(sys.executable).with_name("dagster-webserver")
    log = open(artifacts / "webserver.log", "wb")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {proc.returncode}: see {artifacts / 'webserver.log'}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.time() > deadline:
                pytest.fail(f"dagster-webserver did not answer on {url} within 90 s: see {artifacts / 'webserver.log'}")
            time.sleep(1)
        # The code location loads in a subprocess after the server is up: wait until it has loaded.
        while True:
            loc = _graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
            entries = loc["workspaceOrError"]["locationEntries"]
            kinds = [e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] for e in entries]
            if entries and all(k == "RepositoryLocation" for k in kinds):
                break
            errors = [e["locationOrLoadError"]["message"] for e in entries
                      if e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, f"the code location failed to load: {errors[0][:2000]}"
            if time.time() > deadline:
                pytest.fail(f"the code location did not load within 90 s: {entries}")
            time.sleep(1)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.load(r)
    assert not out.get("errors"), out["errors"]
    return out["data"]


class Browser:
    """Headless Chromium driven over the DevTools protocol (the `websockets` package that
    dagster-webserver's uvicorn[standard] brings): navigate, wait for rendered text, click, screenshot."""

    def __init__(self, binary: str, profile: Path, log: Path):
        from websockets.sync.client import connect

        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             f"--user-data-dir={profile}", "--window-size=1600,1000", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file, deadline = profile / "DevToolsActivePort", time.time() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start its DevTools endpoint (see {log})")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        with warnings.catch_warnings():  # websockets asks for a `with`; the connection is closed in close()
            warnings.simplefilter("ignore", DeprecationWarning)
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ids = 0
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params):
        self.ids += 1
        self.ws.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.ids:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def goto(self, url: str):
        self.send("Page.navigate", url=url)

    def wait_for(self, condition: str, what: str, timeout: float = 30) -> None:
        """Until the JavaScript `condition` holds (the React UI renders after its GraphQL answers)."""
        deadline = time.time() + timeout
        while not self.js(f"(() => {{ try {{ return Boolean({condition}); }} catch (e) {{ return false; }} }})()"):
            if time.time() > deadline:
                raise AssertionError(f"the page never showed {what} in {timeout:.0f} s; its text: {self.text()[:1500]}")
            time.sleep(0.3)

    def screenshot(self, path: Path) -> None:
        time.sleep(1.0)  # let the last layout and images settle
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()


def _check_png(path: Path, min_colours: int = 16):
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 0, f"no screenshot at {path}"
    with Image.open(path) as im:
        im.load()
        assert im.size == (1600, 1000), im.size
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > min_colours, f"{path.name} looks blank: {len(colours or [])} colours"
    return len(colours)


def test_the_ui_shows_the_graph_the_vqa_previews_and_a_check(chromium, built, instance, webserver, artifacts, tmp_path):
    import pyarrow.parquet as pq
    from PIL import Image

    settings, _ = built
    # The asset graph: the assets are there.
    nodes = _graphql(webserver, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert set(ASSETS) <= keys, sorted(keys)

    # genixer_vqa's latest materialisation: its previews and row count.
    mat = _graphql(webserver, """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
        ... on Asset { assetMaterializations(limit: 1) { runId timestamp metadataEntries { label __typename
            ... on MarkdownMetadataEntry { mdStr } ... on IntMetadataEntry { intValue } } } } } }""",
                   {"key": {"path": ["genixer_vqa"]}})["assetOrError"]
    assert mat["__typename"] == "Asset", mat
    assert len(mat["assetMaterializations"]) == 1, "genixer_vqa has no materialisation in the webserver's instance"
    meta = {e["label"]: e for e in mat["assetMaterializations"][0]["metadataEntries"]}
    rows = pq.ParquetFile(settings.table_path("genixer_vqa")).metadata.num_rows
    assert rows > 0
    assert meta["dagster/row_count"]["__typename"] == "IntMetadataEntry"
    assert meta["dagster/row_count"]["intValue"] == rows
    preview = meta.get("kept_preview")
    assert preview is not None and preview["__typename"] == "MarkdownMetadataEntry", sorted(meta)
    m = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", preview["mdStr"])
    assert m, f"kept_preview has no inline PNG: {preview['mdStr'][:200]}"
    with Image.open(io.BytesIO(base64.b64decode(m.group(1)))) as im:
        assert im.format == "PNG" and min(im.size) > 16, (im.format, im.size)
    assert meta["preview"]["__typename"] == "MarkdownMetadataEntry"
    thumb = meta.get("kept_preview (thumbnail)")  # short enough for the metadata table to render it (< 1000 characters)
    assert thumb is not None and thumb["__typename"] == "MarkdownMetadataEntry" and len(thumb["mdStr"]) < 1000, sorted(meta)
    assert re.fullmatch(r"!\[[^\]]*\]\(data:image/(webp|png);base64,[A-Za-z0-9+/=]+\)", thumb["mdStr"]), thumb["mdStr"][:200]

    # Every check of every asset: after the successful smoke run only aims missed, and a missed aim is a warning,
    # so no asset shows a check failed with ERROR severity (the catalog's red cross).
    nodes = _graphql(webserver, """{ assetNodes { assetKey { path } assetChecksOrError { __typename ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status evaluation { severity success } } } } } } }""")["assetNodes"]
    red, warned = [], []
    for n in nodes:
        for c in (n["assetChecksOrError"].get("checks") or []):
            ex = c["executionForLatestMaterialization"]
            if ex and ex["status"] == "FAILED":
                (red if ex["evaluation"]["severity"] == "ERROR" else warned).append(f"{'/'.join(n['assetKey']['path'])}.{c['name']}")
                assert c["blocking"] is (ex["evaluation"]["severity"] == "ERROR"), c
    assert not red and warned, (red, warned)

    # Its checks: each evaluated against the latest materialisation; the blocking not-empty check passed,
    # with its row count as metadata.
    checks = _graphql(webserver, """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
        ... on AssetNode { assetChecksOrError { __typename ... on AssetChecks { checks { name blocking
            executionForLatestMaterialization { status runId evaluation { success
                metadataEntries { label __typename ... on IntMetadataEntry { intValue } } } } } } } } } }""",
                      {"key": {"path": ["genixer_vqa"]}})["assetNodeOrError"]["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    by_name = {c["name"]: c for c in checks["checks"]}
    assert CHECK in by_name, sorted(by_name)
    ex = by_name[CHECK]["executionForLatestMaterialization"]
    assert ex and ex["status"] == "SUCCEEDED" and ex["evaluation"]["success"] is True, ex
    check_meta = {e["label"]: e for e in ex["evaluation"]["metadataEntries"]}
    assert check_meta["rows"]["intValue"] == rows, check_meta
    unevaluated = [n for n, c in by_name.items() if not c["executionForLatestMaterialization"]]
    assert not unevaluated, f"checks of genixer_vqa never evaluated: {unevaluated}"

    # The pages, as the UI renders them: each screenshot a real render, its text naming what it shows.
    _graphql(webserver, "mutation { setNuxSeen }")  # no "join the community" dialog over the screenshots
    vqa = f"{webserver}/assets/genixer_vqa"
    has = "document.body.innerText.includes({!r})".format
    b = Browser(chromium, tmp_path / "profile", artifacts / "chromium.log")
    try:
        b.goto(f"{webserver}/asset-groups")  # the global lineage, groups collapsed: Alt+E expands them all
        b.wait_for(has("filtering"), "the asset groups")
        for kind in ("keyDown", "keyUp"):
            b.send("Input.dispatchKeyEvent", type=kind, key="e", code="KeyE", modifiers=1, windowsVirtualKeyCode=69)
        b.wait_for(" && ".join(has(a) for a in ASSETS), f"the assets {ASSETS} in the expanded graph")
        b.screenshot(artifacts / "asset_graph.png")

        b.goto(f"{vqa}?view=events")  # the latest materialisation and its metadata
        b.wait_for(" && ".join(has(s) for s in ("Materialized in run", "dagster/row_count", "kept_preview")),
                   "genixer_vqa's latest materialisation with kept_preview")
        text = b.text()
        assert re.search(rf"dagster/row_count\s+{rows}\b", text), text[:2000]
        b.screenshot(artifacts / "genixer_vqa_latest.png")
        # The thumbnail is in the table itself, drawn without a click.
        thumb_js = """[...document.querySelectorAll('tr')].filter(r => r.cells.length
            && r.cells[0].innerText.trim() === 'kept_preview (thumbnail)').flatMap(r => [...r.querySelectorAll('img')])
            .filter(i => i.src.startsWith('data:image/') && i.complete && i.naturalWidth > 16)"""
        b.wait_for(f"({thumb_js}).length === 1", "kept_preview's thumbnail in the metadata table")
        b.js(f"({thumb_js})[0].scrollIntoView({{block: 'center'}})")
        b.screenshot(artifacts / "genixer_vqa_thumbnail.png")
        # The full preview, opened as a user would: a click on kept_preview's [Show Markdown].
        x, y = b.js("""(() => { const row = [...document.querySelectorAll('tr')]
                .find(r => r.cells.length && r.cells[0].innerText.trim() === 'kept_preview');
            const a = row && [...row.querySelectorAll('a')].find(e => e.innerText.includes('Show Markdown'));
            if (!a) return [null, null]; a.scrollIntoView({block: 'center'});
            const r = a.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()""")
        assert x is not None, "no [Show Markdown] link on kept_preview's row"
        full = "[...document.images].filter(i => i.src.startsWith('data:image/png;base64,') && i.complete && i.naturalWidth > 16)"
        assert not b.js(f"{full}.length"), "the full-size PNG was on the page before kept_preview was opened"
        for kind in ("mousePressed", "mouseReleased"):
            b.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        b.wait_for(f"{full}.length === 1 && {has('kept_preview')}", "kept_preview's image in the markdown dialog")
        width, right, page = b.js(f"(() => {{ const i = {full}[0]; return [i.naturalWidth, i.getBoundingClientRect().right, "
                                  "window.innerWidth]; })()")
        assert width <= 1200 and right <= page, (width, right, page)  # the figure fits the page
        b.screenshot(artifacts / "genixer_vqa_kept_preview.png")

        b.goto(f"{vqa}?view=checks&checkDetail={CHECK}")  # the blocking check's latest evaluation
        b.wait_for(" && ".join(has(s) for s in (CHECK, "Evaluation result", "Passed", "rows")),
                   f"{CHECK}'s passed evaluation with its metadata")
        text = b.text()
        assert re.search(rf"Metadata\s+rows\s+{rows}\b", text), text[:2000]
        b.screenshot(artifacts / "genixer_vqa_check.png")

        # The graph was built by one "Materialize all" asset backfill (genixer_assets.backfill): its page lists
        # the assets it covered and their partitions.
        (bf,) = [x for x in instance.get_backfills() if x.title == "Materialize all"]
        b.goto(f"{webserver}/runs/b/{bf.backfill_id}")
        b.wait_for(" && ".join(has(s) for s in (bf.backfill_id, "Succeeded", "genixer_vqa")),
                   "the backfill's page, succeeded, with its assets")
        text = b.text()
        # (the page renders the rows in view: the last assets of a long list are not in its text)
        missing = [a for a in ("raw_generations_l", "scored_generations_l", "retrained_models") if a not in text]
        assert not missing, (missing, text[:3000])
        b.screenshot(artifacts / "materialize_all_backfill.png")
    finally:
        b.close()
    for name in ("asset_graph", "genixer_vqa_latest", "genixer_vqa_thumbnail", "genixer_vqa_kept_preview", "genixer_vqa_check",
                 "materialize_all_backfill"):
        _check_png(artifacts / f"{name}.png")
