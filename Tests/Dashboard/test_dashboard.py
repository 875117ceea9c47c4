"""The dashboard in Public/, driven in headless Chromium against a real mimserve.

Starts `mimserve serve` on an ephemeral port with a temporary data directory (and a second one
with a token), then walks every page. Screenshots go to .build/dashboard-screenshots/.

Environment: MIMSERVE_BIN (default .build/release/mimserve), CHROMIUM (default `chromium` on
the PATH). Run: python3 -m pytest -q Tests/Dashboard

No test depends on the machine's speed: the server is ready when it prints where it listens, a
wait for a job's state reads the job's event stream, and a job the page must watch live is held
in the queue (behind a job holding the only trainer slot) until the page has opened its stream.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright, expect

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".build" / "dashboard-screenshots"
SAMPLES = ROOT / "Public" / "samples"
TOKEN = "dashboard-test-token"

# Chromium reports every 4xx/5xx response as a console error; the tests that provoke one on
# purpose (422, 401, a stopped server) allow exactly those.
RESOURCE_ERROR = "Failed to load resource"
TERMINAL = {"succeeded", "failed", "cancelled"}
# A tiny job that is still training whenever a test pauses, cancels or waits on it.
LONG_JOB = {"method": "mae", "preset": "tiny", "dataset": "synthetic", "total_steps": 200000, "batch_size": 16}


class Server:
    def __init__(self, token=None):
        binary = os.environ.get("MIMSERVE_BIN") or str(ROOT / ".build" / "release" / "mimserve")
        if not os.path.exists(binary):
            pytest.fail(f"no server binary at {binary}; build it with `swift build -c release` or set MIMSERVE_BIN")
        self.data = tempfile.mkdtemp(prefix="mimserve-dash-")
        self.log = open(os.path.join(self.data, "server.log"), "w")
        # Port 0: the kernel picks a free port (no race with other processes) and the server
        # prints it once it listens, which is the moment it is ready.
        # A heartbeat every second keeps the deadlines of event-stream waits checked.
        # The dashboard under test is this checkout's (a binary finds the Public/ of the tree it
        # was built from first, which may be another worktree's).
        args = [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", self.data, "--sse-heartbeat", "1",
                "--public-dir", str(ROOT / "Public")]
        if token:
            args += ["--token", token]
        self.token = token
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"mimserve did not listen within 30 s: {self.read_log()}")
            if line is None:
                pytest.fail(f"mimserve exited with {self.proc.wait()}: {self.read_log()}")
            if line.startswith("MIMServe listening on "):
                self.url = line.split()[-1]
                self.port = int(self.url.rsplit(":", 1)[1])
                return

    def _pump(self, lines):
        """Copies the server's output to its log; hands each line to __init__ until it listens."""
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            lines.put(line.strip())
        lines.put(None)

    def read_log(self):
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as res:
            raw = res.read()
            return json.loads(raw) if raw else None

    def wait_for_state(self, job_id, states, timeout=90):
        """Reads the job's event stream until a state event names one of `states`. The stream
        starts with the current state, so nothing is missed; bounded by `timeout` (checked at
        least every heartbeat) and a line count."""
        deadline = time.monotonic() + timeout
        event = None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(f"{self.url}/v1/jobs/{job_id}/events", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as stream:
            for n, raw in enumerate(stream):
                if n > 100_000 or time.monotonic() > deadline:
                    break
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event == "state":
                    state = json.loads(line[len("data: "):])["state"]
                    if state in states:
                        return self.call("GET", f"/v1/jobs/{job_id}")
                    if state in TERMINAL:
                        break
        raise AssertionError(f"job {job_id} not in {states} within {timeout} s: {self.call('GET', f'/v1/jobs/{job_id}')}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        pytest.fail("no chromium on the PATH; `apt-get install chromium` (make test-dashboard does)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, browser, base, width=1280, height=800):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        # Record what reaches the page's event streams (read through fetch), to tell SSE points
        # from history: streams opened, state events in order, and metric events counted by the
        # last state announced before them. The page's own reader gets an untouched copy.
        self.context.add_init_script("""
            window.__sseOpened = 0;
            window.__sseMetrics = 0;
            window.__sseStates = [];
            window.__sseMetricsByState = {};
            window.__sseEvaluations = 0;
            const nativeFetch = window.fetch.bind(window);
            window.fetch = async (input, init) => {
              const res = await nativeFetch(input, init);
              const url = typeof input === 'string' ? input : input.url;
              if (!/\\/events(\\?|$)/.test(url) || !res.ok || !res.body) return res;
              window.__sseOpened += 1;
              const [mine, theirs] = res.body.tee();
              (async () => {
                const reader = mine.pipeThrough(new TextDecoderStream()).getReader();
                let buffer = '';
                try {
                  for (;;) {
                    const { value, done } = await reader.read();
                    if (done) break;
                    buffer += value;
                    let at;
                    while ((at = buffer.indexOf('\\n\\n')) >= 0) {
                      const block = buffer.slice(0, at);
                      buffer = buffer.slice(at + 2);
                      let event = 'message', data = '';
                      for (const line of block.split('\\n')) {
                        if (line.startsWith('event: ')) event = line.slice(7);
                        else if (line.startsWith('data: ')) data += line.slice(6);
                      }
                      if (event === 'state') {
                        try { window.__sseStates.push(JSON.parse(data).state); } catch { window.__sseStates.push('?'); }
                      } else if (event === 'evaluation') {
                        window.__sseEvaluations += 1;
                      } else if (event === 'metric') {
                        window.__sseMetrics += 1;
                        const state = window.__sseStates.length ? window.__sseStates[window.__sseStates.length - 1] : 'none';
                        window.__sseMetricsByState[state] = (window.__sseMetricsByState[state] || 0) + 1;
                      }
                    }
                  }
                } catch { /* the page closed its stream */ }
              })();
              return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
            };
        """)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15000)
        self.base = base
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def goto(self, route):
        self.page.goto(f"{self.base}/#/{route}")

    def shot(self, name, full_page=True):
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    def unexpected_errors(self, allow_resource_errors=False):
        return [e for e in self.errors if not (allow_resource_errors and RESOURCE_ERROR in e)]

    def close(self):
        self.context.close()


@pytest.fixture
def tab(browser, server):
    t = Page(browser, server.url)
    yield t
    t.close()


def chart_points(page, selector):
    return int(page.get_attribute(selector, "data-points") or 0)


def submit_tiny_job(tab, method="mae", steps=300):
    page = tab.page
    tab.goto("new")
    page.select_option("#f-method", method)
    preset = page.eval_on_selector("#f-preset", "s => s.value")
    assert "tiny" in preset, f"the form should preselect the tiny preset, got {preset}"
    page.fill("#f-total_steps", str(steps))
    page.click("#f-submit")
    page.wait_for_url("**/#/jobs/*")
    return page.url.rsplit("/", 1)[-1]


# ---- the tests, in the order a user meets the pages ---------------------------------------


def test_every_page_loads_without_console_errors(tab, server):
    page = tab.page
    tab.goto("jobs")
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("#filter-method option[value=mae]")).to_have_count(1)
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    tab.shot("01-jobs-empty")
    tab.goto("new")
    expect(page.locator("#f-preset")).to_be_visible()
    methods = server.call("GET", "/v1/methods")["methods"]
    assert page.eval_on_selector_all("#f-method option", "os => os.map(o => o.value)") == [m["name"] for m in methods]
    page.click("#model-fields > summary")
    expect(page.locator("#f-mask_ratio")).to_be_visible()
    tab.shot("02-new-job")
    tab.goto("compare")
    expect(page.locator("h1")).to_have_text("Compare jobs")
    tab.shot("03-compare-empty")
    tab.goto("jobs/no-such-job")
    expect(page.get_by_text("No such job")).to_be_visible()
    assert tab.unexpected_errors(allow_resource_errors=True) == [], tab.errors
    # The only error is the 404 of the job that does not exist.
    assert sum(RESOURCE_ERROR in e for e in tab.errors) <= 1, tab.errors


def test_invalid_form_shows_field_errors_from_the_server(tab):
    page = tab.page
    tab.goto("new")
    page.select_option("#f-method", "mae")
    page.fill("#f-total_steps", "0")
    page.click("#model-fields > summary")
    page.fill("#f-mask_ratio", "1.5")
    page.click("#f-submit")
    expect(page.locator("#err-total_steps")).to_be_visible()
    expect(page.locator("#err-mask_ratio")).to_be_visible()
    expect(page.locator("#f-mask_ratio")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-errors")).to_contain_text("The server rejected")
    assert "#/new" in page.url, "an invalid form must not leave the page"
    tab.shot("04-new-job-errors")
    # Fixing a field clears its error.
    page.fill("#f-total_steps", "10")
    expect(page.locator("#err-total_steps")).to_be_hidden()
    assert tab.unexpected_errors(allow_resource_errors=True) == [], tab.errors


def test_tiny_job_from_the_form_streams_its_loss_and_succeeds(tab, server):
    page = tab.page
    # The gate: a long job holds the only trainer slot, so the job the form submits waits in the
    # queue until the page has opened its event stream; then the slot is released. Every step
    # happens after the page subscribed, however fast or slow this machine is.
    holder = server.call("POST", "/v1/jobs", {**LONG_JOB, "seed": 2})
    server.wait_for_state(holder["id"], {"running"})
    job_id = submit_tiny_job(tab, "mae", steps=300)
    page.wait_for_function("() => window.__sseOpened > 0")
    expect(page.locator(".page-head .badge")).to_have_text("queued")
    assert server.call("GET", f"/v1/jobs/{job_id}")["step"] == 0
    assert chart_points(page, "#loss-chart") == 0, "no history yet: every point must come over the stream"
    server.call("POST", f"/v1/jobs/{holder['id']}/cancel")
    server.wait_for_state(holder["id"], {"cancelled"})
    server.call("DELETE", f"/v1/jobs/{holder['id']}")
    # The chart gains points while the job runs, and they arrive over SSE: the stream announces
    # the job running, then its metrics, then its end (the server's order, not the clock's).
    expect(page.locator(".page-head .badge")).to_have_text("succeeded", timeout=60000)
    page.wait_for_function("() => window.__sseStates.includes('succeeded')")
    states = page.evaluate("() => window.__sseStates")
    by_state = page.evaluate("() => window.__sseMetricsByState")
    assert states.index("running") < states.index("succeeded"), states
    assert by_state.get("running", 0) >= 10, (by_state, states)
    page.wait_for_function("() => +document.querySelector('#loss-chart').dataset.points >= 10")
    # Hovering the loss chart shows step, loss and lr.
    box = page.locator("#loss-chart canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    tip = page.locator("#loss-chart .chart-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("step")
    expect(tip).to_contain_text("lr")
    page.check("#loss-log")
    expect(page.locator("#checkpoints-list a[href]").first).to_be_visible()
    expect(page.locator("#config")).to_contain_text("mask_ratio")
    tab.shot("05-job-succeeded")
    assert server.call("GET", f"/v1/jobs/{job_id}")["state"] == "succeeded"
    assert tab.unexpected_errors() == [], tab.errors


def latest_job(server, state="succeeded"):
    jobs = server.call("GET", f"/v1/jobs?state={state}&limit=1")["jobs"]
    assert jobs, f"no {state} job"
    return jobs[0]


def test_reconstruction_from_an_upload_and_a_sample(tab, server):
    page = tab.page
    job = latest_job(server)
    tab.goto(f"jobs/{job['id']}")
    expect(page.locator(".page-head .badge")).to_have_text("succeeded")
    expect(page.locator("#recon-checkpoint option")).not_to_have_count(1)
    page.set_input_files("#recon-file", str(SAMPLES / "cat.jpg"))
    strip = page.locator("#recon-strip")
    expect(strip).to_be_visible(timeout=30000)
    page.wait_for_function("() => document.querySelector('#recon-strip').complete && document.querySelector('#recon-strip').naturalWidth > 0")
    width = page.eval_on_selector("#recon-strip", "img => img.naturalWidth")
    height = page.eval_on_selector("#recon-strip", "img => img.naturalHeight")
    assert width >= 3 * height, f"the strip holds four images side by side, got {width}×{height}"
    first_src = strip.get_attribute("src")
    # A sample photo (grayscale PNG) at another mask ratio.
    page.click("button[data-sample='camera.png']")
    page.wait_for_function(f"() => document.querySelector('#recon-strip').src !== {json.dumps(first_src)} && document.querySelector('#recon-strip').naturalWidth > 0", timeout=30000)
    page.locator("#reconstruction").scroll_into_view_if_needed()
    tab.shot("06-reconstruction")
    page.locator("#reconstruction").screenshot(path=str(SHOTS / "06b-reconstruction-panel.png"))
    assert tab.unexpected_errors() == [], tab.errors


def test_evaluation_against_the_raw_pixel_baseline(tab, server):
    page = tab.page
    job = latest_job(server)
    tab.goto(f"jobs/{job['id']}")
    expect(page.locator("#eval-dataset option[value=synthetic]")).to_have_count(1)
    page.select_option("#eval-dataset", "synthetic")
    page.click("#eval-run")
    table = page.locator("#evaluations table.evaluation").first
    expect(table).to_be_visible(timeout=90000)
    expect(table).to_contain_text("Raw pixels")
    expect(table.locator("tbody tr")).to_have_count(2)
    page.locator("#evaluations").screenshot(path=str(SHOTS / "06c-evaluation.png"))
    assert tab.unexpected_errors() == [], tab.errors


def test_continue_pretraining_starts_a_job_from_the_weights_of_another(tab, server):
    page = tab.page
    source = latest_job(server)
    tab.goto(f"jobs/{source['id']}")
    expect(page.locator('[data-stat="interruptions"] dd')).to_have_text("0")
    page.click("#continue-job")
    page.wait_for_url("**/#/new?*")
    expect(page.locator("#f-init")).to_be_checked()
    # The form holds the source's settings (as Clone does); only where it starts differs.
    page.click("#f-submit")
    page.wait_for_url("**/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[-1]
    assert job_id != source["id"]
    server.wait_for_state(job_id, {"succeeded"})
    job = server.call("GET", f"/v1/jobs/{job_id}")
    assert job["config"]["init"] == {"job": source["id"], "step": source["step"]}, job["config"].get("init")
    expect(page.locator("#config-init")).to_contain_text(source["id"])
    assert tab.unexpected_errors() == [], tab.errors
    # The tests after this one count the jobs there are.
    tab.goto("jobs")
    server.call("DELETE", f"/v1/jobs/{job_id}")


def test_finetune_trains_a_classifier_on_the_encoder_of_another(tab, server):
    page = tab.page
    # Pretraining mode has no fine-tuning settings: a pretraining job is refused them.
    tab.goto("new")
    expect(page.locator("#f-preset")).to_be_visible()
    expect(page.locator("#finetune-fields, #f-pool, #f-eval_every")).to_have_count(0)
    source = latest_job(server)
    assert source["task"] == "pretrain", source
    tab.goto(f"jobs/{source['id']}")
    expect(page.locator('[data-stat="task"] dd')).to_have_text("pretrain")
    expect(page.locator("#recon-run")).to_have_count(1)
    page.click("#finetune-job")
    page.wait_for_url("**/#/new?*")
    expect(page.locator("h1")).to_contain_text(f"Fine-tuning job {source['id']}")
    # The fine-tuning fieldset holds the schema's fine-tuning settings; the dataset is labelled.
    overrides = server.call("GET", "/v1/methods")["schema"]["properties"]["overrides"]["properties"]
    tuning = sorted(n for n, p in overrides.items() if p.get("x-group") == "finetune")
    assert {"pool", "eval_every", "layer_decay"} <= set(tuning), tuning
    assert sorted(page.eval_on_selector_all("#finetune-fields [id^=f-]", "es => es.map(e => e.name)")) == tuning
    expect(page.locator("#model-fields")).to_have_count(0)
    expect(page.locator("#f-method")).to_be_disabled()
    datasets = [d["id"] for d in server.call("GET", "/v1/datasets")["datasets"]]
    expect(page.locator("#f-dataset")).to_have_value("fashion-mnist" if "fashion-mnist" in datasets else "synthetic")
    page.fill("#f-total_steps", "6")
    page.fill("#f-eval_every", "3")
    page.fill("#f-eval_images", "200")
    tab.shot("06d-finetune-form")
    # The gate (as in the live-loss test): the job waits in the queue until the page streams it,
    # so its scores reach the chart over SSE.
    holder = server.call("POST", "/v1/jobs", {**LONG_JOB, "seed": 3})
    server.wait_for_state(holder["id"], {"running"})
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as posted:
        page.click("#f-submit")
    body = posted.value.post_data_json
    assert body["task"] == "finetune" and body["init"] == {"job": source["id"]} and "preset" not in body, body
    assert body["overrides"] == {"eval_every": 3, "eval_images": 200}, body
    page.wait_for_url(re.compile(r".*#/jobs/[^/?]+$"))
    job_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_function("() => window.__sseOpened > 0")
    assert chart_points(page, "#accuracy-chart") == 0
    server.call("POST", f"/v1/jobs/{holder['id']}/cancel")
    server.wait_for_state(holder["id"], {"cancelled"})
    server.call("DELETE", f"/v1/jobs/{holder['id']}")
    server.wait_for_state(job_id, {"succeeded"})
    expect(page.locator(".page-head .badge")).to_have_text("succeeded")
    expect(page.locator('[data-stat="task"] dd')).to_have_text("finetune")
    scores = [e for e in server.call("GET", f"/v1/jobs/{job_id}/evaluations")["evaluations"] if e["result"].get("kind") == "finetune"]
    assert sorted(e["step"] for e in scores) == [3, 6], scores
    page.wait_for_function("() => window.__sseEvaluations >= 2")
    page.wait_for_function("() => +document.querySelector('#accuracy-chart').dataset.points === 2")
    expect(page.locator('[data-stat="top1"] dd')).to_contain_text("at step 6")
    # No decoder: no reconstruction, and nothing to continue pretraining or fine-tune from.
    expect(page.locator("#reconstruction, #recon-run")).to_have_count(0)
    expect(page.locator("#continue-job, #finetune-job")).to_have_count(0)
    expect(page.locator("#config-init")).to_contain_text(source["id"])
    expect(page.locator("#evaluations")).to_contain_text("accuracy chart")
    page.locator("#accuracy").scroll_into_view_if_needed()
    tab.shot("06e-finetune-job")
    # Its clone asks for what it asked for: the recipe's rates, warm-up and evaluation interval
    # are derived again, not copied as overrides.
    tab.goto(f"new?from={job_id}")
    expect(page.locator("#f-eval_every")).to_have_value("3")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as posted:
        page.click("#f-submit")
    again = posted.value.post_data_json
    assert again["overrides"] == {"eval_every": 3, "eval_images": 200}, again
    assert again["task"] == "finetune" and again["init"] == {"job": source["id"], "step": source["step"]}, again
    page.wait_for_url(re.compile(r".*#/jobs/[^/?]+$"))
    clone_id = page.url.rsplit("/", 1)[-1]
    assert tab.unexpected_errors() == [], tab.errors
    # The tests after this one count the jobs there are.
    tab.goto("jobs")
    server.wait_for_state(clone_id, TERMINAL)
    for job in (job_id, clone_id):
        server.call("DELETE", f"/v1/jobs/{job}")


def test_clone_sends_the_request_again(tab, server):
    """A clone replays what its source asked for, not everything that was derived from it: a
    warm-up that is a share of the steps follows the clone's steps, and a value set to none
    (SimMIM without clipping) stays none."""
    page = tab.page
    asked = {"method": "simmim", "preset": "tiny", "dataset": "synthetic", "total_steps": 40, "batch_size": 8, "seed": 5,
             "overrides": {"clip_grad": None, "mask_ratio": 0.5}}
    source = server.call("POST", "/v1/jobs", asked)
    assert source["request"] == asked, source["request"]
    assert source["config"]["training"].get("clip_grad") is None and "request" not in source["config"], source["config"]
    tab.goto(f"jobs/{source['id']}")
    expect(page.locator("#config-request")).to_contain_text("total_steps 40, batch_size 8, seed 5, clip_grad none, mask_ratio 0.5")
    page.get_by_role("link", name="Clone").click()
    page.wait_for_url("**/#/new?*")
    expect(page.locator("#f-clip_grad")).to_have_value("none")
    expect(page.locator("#f-mask_ratio")).to_have_value("0.5")
    expect(page.locator("#f-warmup_steps")).not_to_have_value(str(source["config"]["training"]["warmup_steps"]))
    page.fill("#f-total_steps", "80")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as posted:
        page.click("#f-submit")
    body = posted.value.post_data_json
    assert body["overrides"] == asked["overrides"], body
    assert (body["method"], body["preset"], body["total_steps"], body["batch_size"], body["seed"]) == ("simmim", source["preset"], 80, 8, 5), body
    page.wait_for_url(re.compile(r".*#/jobs/[^/?]+$"))
    clone = server.call("GET", f"/v1/jobs/{page.url.rsplit('/', 1)[-1]}")
    recipe = next(p for m in server.call("GET", "/v1/methods")["methods"] if m["name"] == "simmim"
                  for p in m["presets"] if p["name"] == source["preset"])["recipe"]
    assert clone["config"]["training"]["warmup_steps"] == int(recipe["warmup_fraction"] * 80 + 0.5), clone["config"]["training"]
    assert clone["config"]["training"].get("clip_grad") is None, clone["config"]["training"]
    assert tab.unexpected_errors() == [], tab.errors
    # The tests after this one count the jobs there are.
    tab.goto("jobs")
    for job in (source, clone):
        server.wait_for_state(job["id"], TERMINAL)
        server.call("DELETE", f"/v1/jobs/{job['id']}")


def test_compare_overlays_two_methods(tab, server):
    page = tab.page
    first = latest_job(server)
    other = server.call("POST", "/v1/jobs", {"method": "simmim", "preset": "tiny", "dataset": "synthetic", "total_steps": 150, "batch_size": 16, "seed": 0})
    server.wait_for_state(other["id"], ["succeeded"])
    # Quality: a probe evaluation of the first, and a fine-tuning job started from it.
    probe = server.call("POST", f"/v1/jobs/{first['id']}/evaluate", {"dataset": "synthetic"})
    tuned = server.call("POST", "/v1/jobs", {"method": first["method"], "task": "finetune", "init": {"job": first["id"]},
                                             "dataset": "synthetic", "total_steps": 4, "seed": 0,
                                             "overrides": {"eval_every": 4, "eval_images": 100}})
    server.wait_for_state(tuned["id"], ["succeeded"])
    score = [e for e in server.call("GET", f"/v1/jobs/{tuned['id']}/evaluations")["evaluations"] if e["result"].get("kind") == "finetune"][-1]
    tab.goto(f"compare?ids={first['id']},{other['id']},{tuned['id']}")
    expect(page.locator("#compare-table tbody tr")).to_have_count(3)
    page.wait_for_function("() => +document.querySelector('#compare-by-step').dataset.points > 20 && +document.querySelector('#compare-by-time').dataset.points > 20")
    expect(page.locator("#compare-table")).to_contain_text("simmim")
    expect(page.locator("#compare-table")).to_contain_text("MB")
    # Only the jobs with evaluations have a quality row; the other is counted below the table.
    rows = page.locator("#compare-quality tbody tr")
    expect(rows).to_have_count(2)
    pct = lambda v: f"{v * 100:.1f} %"
    first_row = page.locator(f"#compare-quality tr[data-id='{first['id']}']")
    for value in (probe["result"]["knn"]["encoder"], probe["result"]["knn"]["raw_pixels"], probe["result"]["linear_probe"]["random_encoder"]):
        expect(first_row).to_contain_text(pct(value))
    tuned_row = page.locator(f"#compare-quality tr[data-id='{tuned['id']}']")
    expect(tuned_row.locator("[data-col=top1]")).to_have_text(pct(score["result"]["top1"]))
    expect(tuned_row).to_contain_text("finetune")
    expect(tuned_row).to_contain_text(first["id"][:8])
    expect(page.locator("#compare-quality-missing")).to_contain_text("1 of the selected jobs has no evaluation")
    tab.shot("07-compare")
    assert tab.unexpected_errors() == [], tab.errors
    # The tests after this one count the jobs there are.
    tab.goto("jobs")
    server.call("DELETE", f"/v1/jobs/{tuned['id']}")


def test_jobs_table_filters_and_actions_with_confirmation(tab, server):
    page = tab.page
    long = server.call("POST", "/v1/jobs", {**LONG_JOB, "seed": 1})
    row = page.locator(f"tr[data-id='{long['id']}']")
    tab.goto("jobs")
    expect(row.locator(".badge")).to_have_text("running", timeout=30000)
    expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    tab.shot("08-jobs")
    # Pause asks first; "Keep it" leaves the job alone.
    row.locator("button[data-action=pause]").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-cancel")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert server.call("GET", f"/v1/jobs/{long['id']}")["state"] == "running"
    row.locator("button[data-action=pause]").click()
    page.click("#confirm-ok")
    expect(row.locator(".badge")).to_have_text("paused", timeout=15000)
    row.locator("button[data-action=resume]").click()
    page.click("#confirm-ok")
    expect(row.locator(".badge")).to_have_text(re.compile("queued|running"), timeout=15000)
    row.locator("button[data-action=cancel]").click()
    page.click("#confirm-ok")
    expect(row.locator(".badge")).to_have_text("cancelled", timeout=15000)
    # Filters.
    page.select_option("#filter-method", "simmim")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    assert "method=simmim" in page.url
    page.select_option("#filter-method", "")
    page.select_option("#filter-state", "cancelled")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    row.locator("button[data-action=delete]").click()
    page.click("#confirm-ok")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(0)
    expect(page.get_by_text("No jobs match")).to_be_visible()
    assert tab.unexpected_errors() == [], tab.errors


def test_pagination(tab, server):
    page = tab.page
    # 3 jobs exist; make 20 more queued-then-cancelled cheap rows so a page of 20 overflows.
    for i in range(20):
        j = server.call("POST", "/v1/jobs", {"method": "mae", "preset": "tiny", "dataset": "synthetic", "total_steps": 100000, "seed": 100 + i})
        server.call("POST", f"/v1/jobs/{j['id']}/cancel")
    tab.goto("jobs")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(20)
    page.get_by_role("button", name="Older →").click()
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    expect(page.get_by_text("Page 2")).to_be_visible()
    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("#jobs-table tbody tr")).to_have_count(20)
    assert tab.unexpected_errors() == [], tab.errors


def test_keyboard_reaches_navigation_and_actions(tab, server):
    page = tab.page
    tab.goto("jobs")
    expect(page.locator("#jobs-table tbody tr").first).to_be_visible()
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.add(page.evaluate("() => { const e = document.activeElement; return e.dataset.nav || e.dataset.action || e.id || e.tagName; }"))
    assert {"new", "compare", "filter-state", "filter-method"} <= seen, seen
    assert "delete" in seen or "cancel" in seen, seen


def test_narrow_window(browser, server):
    t = Page(browser, server.url, width=400, height=800)
    try:
        job = latest_job(server)
        # Each page is measured once what it shows has rendered (not after a pause): its own
        # content is visible, then two animation frames let layout and charts settle.
        for route, name, ready in [("jobs", "09-narrow-jobs", "#jobs-table tbody tr >> nth=0"),
                                   (f"jobs/{job['id']}", "10-narrow-job", "#checkpoints-list a[href] >> nth=0"),
                                   ("new", "11-narrow-new", "#f-preset")]:
            t.goto(route)
            expect(t.page.locator(ready)).to_be_visible()
            if route.startswith("jobs/"):
                expect(t.page.locator(".page-head .badge")).to_have_text("succeeded")
                t.page.wait_for_function("() => +document.querySelector('#loss-chart').dataset.points > 0")
            t.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
            overflow = t.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{route} scrolls sideways by {overflow} px at 400 px"
            t.shot(name)
        assert t.unexpected_errors() == [], t.errors
    finally:
        t.close()


def test_token_protected_server_prompts_for_the_token(browser):
    protected = Server(token=TOKEN)
    t = Page(browser, protected.url)
    requests = []
    t.page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
    try:
        page = t.page
        # Reads need the token too (--auth-reads is on with a token): the form asks at once.
        t.goto("new")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("token")
        t.shot("12-token-prompt", full_page=False)
        page.fill("#token-input", TOKEN)
        page.click("#token-save")
        expect(dialog).to_be_hidden()
        page.select_option("#f-method", "mae")
        page.fill("#f-total_steps", "20")
        page.click("#f-submit")
        page.wait_for_url("**/#/jobs/*")
        assert page.evaluate("() => sessionStorage.getItem('mimserve.token')") == TOKEN
        expect(page.locator(".page-head .badge")).to_have_text("succeeded", timeout=60000)
        assert t.unexpected_errors(allow_resource_errors=True) == [], t.errors
        # The token rides in the Authorization header only, the event stream's included.
        assert not [u for u, _ in requests if TOKEN in u or "access_token" in u], requests
        streams = [a for u, a in requests if re.search(r"/v1/jobs/[^/]+/events", u)]
        assert streams and all(a == f"Bearer {TOKEN}" for a in streams), requests
        # A stopped server is announced, not silently stale.
        t.goto("jobs")
        expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
        protected.proc.terminate()
        protected.proc.wait(10)
        expect(page.locator("#offline-banner")).to_be_visible(timeout=15000)
        t.shot("13-server-unreachable", full_page=False)
    finally:
        t.close()
        protected.stop()


def offered_actions(page):
    """The lifecycle buttons the job page shows, in a stable order."""
    return sorted(page.eval_on_selector_all(".head-actions button[data-action]", "bs => bs.filter(b => !b.hidden).map(b => b.dataset.action)"))


def test_every_method_and_preset_starts_from_the_form(browser):
    """The form is rendered from the job schema: every preset of every method submits through it
    as a new user would (method, preset, steps, batch) and reaches `running`; the job page then
    offers exactly the actions the server lists for a running job, and for a cancelled one."""
    s = Server()
    t = Page(browser, s.url)
    page = t.page
    try:
        methods = s.call("GET", "/v1/methods")["methods"]
        started = []
        for m in methods:
            for p in m["presets"]:
                t.goto("new")
                page.select_option("#f-method", m["name"])
                page.select_option("#f-preset", p["name"])
                # Choices are selects and lists are lists: the fields this method reads, typed.
                for name, kind in [("decoder_positions", "SELECT"), ("grouping", "SELECT"), ("depths", "INPUT"), ("norm_pix_loss", "INPUT")]:
                    if page.locator(f"#f-{name}").count():
                        assert page.eval_on_selector(f"#f-{name}", "e => e.tagName") == kind, (m["name"], name)
                page.fill("#f-total_steps", "100000")
                page.fill("#f-batch_size", "2")
                page.click("#f-submit")
                page.wait_for_url(re.compile(r".*#/jobs/[^/?]+$"))
                job_id = page.url.rsplit("/", 1)[1]
                job = s.wait_for_state(job_id, {"running"}, timeout=120)
                assert (job["method"], job["preset"]) == (m["name"], p["name"])
                expect(page.locator(".page-head .badge")).to_have_text("running", timeout=30000)
                expect(page.locator(".head-actions button[data-action=pause]")).to_be_visible()
                assert offered_actions(page) == sorted(s.call("GET", f"/v1/jobs/{job_id}")["actions"]) == ["cancel", "pause"]
                s.call("POST", f"/v1/jobs/{job_id}/cancel")
                s.wait_for_state(job_id, {"cancelled"}, timeout=120)
                expect(page.locator(".page-head .badge")).to_have_text("cancelled", timeout=30000)
                expect(page.locator(".head-actions button[data-action=delete]")).to_be_visible()
                assert offered_actions(page) == ["delete"]
                started.append((m["name"], p["name"]))
        assert len(started) == sum(len(m["presets"]) for m in methods) >= 12, started
        t.shot("14-every-preset-started")
        assert t.unexpected_errors() == [], t.errors
    finally:
        t.close()
        s.stop()


def test_queued_and_paused_jobs_offer_what_the_server_accepts(browser):
    """A queued job (behind one holding the only slot) and a paused one show the server's actions,
    and every action a state does not list is refused by the server."""
    s = Server()
    t = Page(browser, s.url)
    page = t.page
    try:
        first = s.call("POST", "/v1/jobs", {**LONG_JOB, "seed": 11})
        s.wait_for_state(first["id"], {"running"})
        waiting = s.call("POST", "/v1/jobs", {**LONG_JOB, "seed": 12})
        t.goto(f"jobs/{waiting['id']}")
        expect(page.locator(".page-head .badge")).to_have_text("queued")
        assert offered_actions(page) == sorted(waiting["actions"]) == ["cancel", "delete"]
        refuses(s, waiting["id"], ["pause", "resume"])
        s.call("POST", f"/v1/jobs/{first['id']}/pause")
        s.wait_for_state(first["id"], {"paused"})
        t.goto(f"jobs/{first['id']}")
        expect(page.locator(".page-head .badge")).to_have_text("paused")
        assert offered_actions(page) == ["cancel", "delete", "resume"]
        refuses(s, first["id"], ["pause"])
        assert t.unexpected_errors() == [], t.errors
    finally:
        t.close()
        s.stop()


def refuses(server, job_id, actions):
    """Each action is refused with 409 (the job's state does not allow it)."""
    for action in actions:
        try:
            server.call("POST", f"/v1/jobs/{job_id}/{action}")
        except urllib.error.HTTPError as e:
            assert e.code == 409, (action, e.code)
            continue
        raise AssertionError(f"{action} was accepted")
