#!/usr/bin/env python3
"""Contract test: the real server against its own /openapi.json, every operation reaching a 2xx.

1. Starts `mimserve serve` on a port the kernel picks (gate: the "listening on" line it prints).
2. Scripted lifecycle, each response checked against the document: submit → events → pause →
   resume → cancel → delete → get (404). Every wait reads the job's event stream until the state
   it waits for is announced: nothing here sleeps to decide a result.
3. Fixtures for the generated tests, made through the API: a tiny job that succeeds (with
   checkpoints), a long job held paused, a spare finished job to delete, an image folder.
4. schemathesis, twice (config files beside this script, fixture ids from the environment):
   examples + coverage + fuzzing with the fixture ids as path parameters, then the stateful phase
   driven by the document's links (ids from responses).
5. Prints, per operation, how many answers were 2xx; fails unless every operation has one, and
   schemathesis fails the run on any server error or schema violation.

Every request and wait is bounded in count and time; all traffic goes to 127.0.0.1.
Needs schemathesis 4.32 or later (per-operation parameters and body fields in its config files,
bounded reads and per-event validation of event streams).
Usage: python3 Tests/Contract/contract.py path/to/mimserve   (Tests/Contract/schemathesis.sh runs it)
CONTRACT_KEEP=1 keeps the temporary folder (server log, calls.jsonl) for a look afterwards.
"""
import collections
import importlib.metadata
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Plus, for schemathesis: undocumented methods on a documented path answer 405 with a right Allow.
SCHEMATHESIS_CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
                       "response_schema_conformance", "unsupported_method", "allow_header_conformance"]
TERMINAL = {"succeeded", "failed", "cancelled"}
SCHEMATHESIS_TIMEOUT_S = 420  # per schemathesis invocation; a run that takes longer is a failure
WAIT_TIMEOUT_S = 120  # per wait for a job state
# A tiny job that is still training when paused, whatever the machine's speed.
LONG_JOB = {"method": "mae", "preset": "tiny", "dataset": "synthetic", "total_steps": 10_000_000, "batch_size": 4, "seed": 3}


class Server:
    """`mimserve serve` on 127.0.0.1, port 0; ready once it prints the address it listens on."""

    def __init__(self, binary, data_dir, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir),
             "--public-dir", str(ROOT / "Public"), "--log-level", "error", "--sse-heartbeat", "1"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        lines = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit("contract: mimserve did not say where it listens within 60 s") from None
            if line is None:
                raise SystemExit(f"contract: mimserve exited with {self.proc.wait()} before listening; see {log_path}")
            if line.startswith("MIMServe listening on "):
                self.url = line.split()[-1]
                return

    def _pump(self, lines):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            lines.put(line.strip())
        lines.put(None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Client:
    """Calls operations by their document entry and checks every answer against it."""

    def __init__(self, url, calls):
        self.url = url
        self.calls = calls
        self.schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        self.session = requests.Session()
        self.session.trust_env = False  # never a proxy: 127.0.0.1 only

    def call(self, method, path, expect, *, id=None, body=None, **parts):
        operation = self.schema[path][method]
        if id is not None:
            parts.setdefault("path_parameters", {})["id"] = id
        if body is not None:
            parts["body"] = body
            parts.setdefault("media_type", "application/json")
        case = operation.Case(**parts)
        response = case.call(base_url=self.url, session=self.session, timeout=60)
        self.calls.append({"operation": operation.label, "status": response.status_code, "source": "script"})
        case.validate_response(response, checks=CHECKS)
        if response.status_code != expect:
            raise AssertionError(f"{operation.label}: expected {expect}, got {response.status_code}: {response.text[:500]}")
        content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])[0]
        return response.json() if content_type.startswith("application/json") else response

    def wait_for(self, job_id, states, *, until_metric=False):
        """Reads GET /v1/jobs/{id}/events until a state event names one of `states` (and, with
        until_metric, a metric event follows it). Bounded: WAIT_TIMEOUT_S and 100 000 lines; the
        server's 1 s heartbeat keeps the deadline checked while the job is quiet."""
        label = self.schema["/v1/jobs/{id}/events"]["GET"].label
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        with self.session.get(f"{self.url}/v1/jobs/{job_id}/events", stream=True, timeout=(5, 10)) as r:
            self.calls.append({"operation": label, "status": r.status_code, "source": "script"})
            if r.status_code != 200 or not r.headers.get("content-type", "").startswith("text/event-stream"):
                raise AssertionError(f"{label}: {r.status_code} {r.headers.get('content-type')}: {r.text[:500]}")
            event, reached = None, None
            for n, line in enumerate(r.iter_lines(chunk_size=None, decode_unicode=True)):
                if n > 100_000 or time.monotonic() > deadline:
                    break
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event == "state":
                    state = json.loads(line[len("data: "):])["state"]
                    if state in states:
                        reached = state
                        if not until_metric:
                            return state
                    elif state in TERMINAL:
                        raise AssertionError(f"job {job_id} ended {state} while waiting for {states}")
                elif line.startswith("data: ") and event == "metric" and reached:
                    return reached
        raise AssertionError(f"job {job_id} did not reach {states} within {WAIT_TIMEOUT_S} s")


def scripted_lifecycle(c):
    """submit → events → pause → resume → cancel → delete, each answer checked against the document."""
    job = c.call("POST", "/v1/jobs", 201, body=LONG_JOB, headers={"Idempotency-Key": "contract-lifecycle"})
    again = c.call("POST", "/v1/jobs", 200, body=LONG_JOB, headers={"Idempotency-Key": "contract-lifecycle"})
    assert again["id"] == job["id"], "the same Idempotency-Key and body must return the same job"
    c.wait_for(job["id"], {"running"}, until_metric=True)
    c.call("POST", "/v1/jobs/{id}/pause", 200, id=job["id"])
    c.wait_for(job["id"], {"paused"})
    c.call("POST", "/v1/jobs/{id}/pause", 409, id=job["id"])
    assert c.call("POST", "/v1/jobs/{id}/resume", 200, id=job["id"])["state"] == "queued"
    c.wait_for(job["id"], {"running"}, until_metric=True)
    c.call("DELETE", "/v1/jobs/{id}", 409, id=job["id"])  # running jobs are not deleted
    c.call("POST", "/v1/jobs/{id}/cancel", 200, id=job["id"])
    c.wait_for(job["id"], {"cancelled"})
    # The stream of a finished job ends by itself: now the whole answer can be checked.
    events = c.call("GET", "/v1/jobs/{id}/events", 200, id=job["id"])
    assert "event: state" in events.text and '"cancelled"' in events.text, events.text[:500]
    c.call("DELETE", "/v1/jobs/{id}", 204, id=job["id"])
    c.call("GET", "/v1/jobs/{id}", 404, id=job["id"])
    c.call("POST", "/v1/jobs/{id}/resume", 404, id=job["id"])


def make_fixtures(c, data_dir):
    """Jobs and a dataset folder the generated tests can reach. The newest job is a finished one,
    so a link from GET /v1/jobs never leads to a stream that does not end."""
    held = c.call("POST", "/v1/jobs", 201, body={**LONG_JOB, "seed": 4})
    c.wait_for(held["id"], {"running"}, until_metric=True)
    c.call("POST", "/v1/jobs/{id}/pause", 200, id=held["id"])
    c.wait_for(held["id"], {"paused"})
    spare = c.call("POST", "/v1/jobs", 201, body={"method": "simmim", "preset": "tiny", "total_steps": 2, "batch_size": 2})
    c.wait_for(spare["id"], {"succeeded"})
    done = c.call("POST", "/v1/jobs", 201, body={
        "method": "mae", "preset": "tiny", "dataset": "synthetic", "total_steps": 20, "batch_size": 8, "seed": 0,
        "overrides": {"checkpoint_every": 10, "mask_ratio": 0.75}})
    c.wait_for(done["id"], {"succeeded"})
    steps = [ck["step"] for ck in c.call("GET", "/v1/jobs/{id}/checkpoints", 200, id=done["id"])["checkpoints"]]
    assert steps == [10, 20], steps
    # An image folder with two classes for POST /v1/datasets.
    for label, names in {"animals": ["cat.jpg", "astronaut.jpg"], "things": ["camera.png", "brick.jpg"]}.items():
        folder = data_dir / "datasets" / "contract-folder" / label
        folder.mkdir(parents=True)
        for name in names:
            shutil.copy(ROOT / "Public" / "samples" / name, folder / name)
    c.call("POST", "/v1/datasets", 201, body={"id": "contract-folder"})
    return {"CONTRACT_DONE_JOB": done["id"], "CONTRACT_DONE_STEP": str(steps[-1]),
            "CONTRACT_HELD_JOB": held["id"], "CONTRACT_SPARE_JOB": spare["id"]}


def run_schemathesis(url, name, config, phases, env, extra=()):
    args = ["schemathesis", "--config-file", str(HERE / config), "--no-color", "run", f"{url}/openapi.json",
            "--url", url, "--phases", phases,
            "--checks", ",".join(SCHEMATHESIS_CHECKS),
            "--workers", "1", "--seed", "1", "--request-timeout", "60", "--generation-database", "none", *extra]
    print(f"contract: schemathesis {name}: {' '.join(args[1:])}", flush=True)
    try:
        result = subprocess.run(args, env={**os.environ, **env, "CONTRACT_SOURCE": name}, timeout=SCHEMATHESIS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"contract: schemathesis {name} ran over {SCHEMATHESIS_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise SystemExit(f"contract: schemathesis {name} failed (exit {result.returncode})")


def coverage_table(schema, calls):
    operations = [op.label for op in (r.ok() for r in schema.get_all_operations())]
    seen = collections.defaultdict(collections.Counter)
    ok = collections.defaultdict(collections.Counter)
    probes = collections.Counter()
    for call in calls:
        if call.get("method", call["operation"].split()[0]).upper() != call["operation"].split()[0]:
            probes[call["status"]] += 1  # an undocumented method on a documented path
            continue
        seen[call["operation"]][call["status"]] += 1
        if 200 <= call["status"] < 300:
            ok[call["operation"]][call["source"]] += 1
    width = max(map(len, operations))
    print(f"\n{'operation':<{width}}  {'2xx':>5}  {'calls':>5}  2xx by source; statuses seen")
    for label in operations:
        sources = ", ".join(f"{s} {n}" for s, n in sorted(ok[label].items())) or "—"
        statuses = " ".join(f"{code}×{n}" for code, n in sorted(seen[label].items()))
        print(f"{label:<{width}}  {sum(ok[label].values()):>5}  {sum(seen[label].values()):>5}  {sources}; {statuses}")
    if probes:
        print(f"(undocumented methods on documented paths: {' '.join(f'{c}×{n}' for c, n in sorted(probes.items()))})")
    missing = [label for label in operations if not ok[label]]
    print(f"\ncontract: {len(operations) - len(missing)} of {len(operations)} operations answered 2xx at least once")
    return missing


def main():
    version = tuple(int(part) for part in importlib.metadata.version("schemathesis").split(".")[:2])
    if version < (4, 32):
        raise SystemExit(f"contract: schemathesis {importlib.metadata.version('schemathesis')} is too old; "
                         "pip install -U 'schemathesis>=4.32'")
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / ".build" / "release" / "mimserve")
    work = Path(tempfile.mkdtemp(prefix="mimserve-contract-"))
    record = work / "calls.jsonl"
    server = Server(binary, work / "data", work / "server.log")
    started = time.monotonic()
    try:
        calls = []
        client = Client(server.url, calls)
        scripted_lifecycle(client)
        env = make_fixtures(client, work / "data")
        print(f"contract: lifecycle and fixtures done in {time.monotonic() - started:.0f} s: {env}", flush=True)
        env |= {"SCHEMATHESIS_HOOKS": str(HERE / "hooks.py"), "CONTRACT_RECORD": str(record)}
        run_schemathesis(server.url, "fuzz", "fuzz.toml", "examples,coverage,fuzzing", env, ["--max-examples", "15"])
        run_schemathesis(server.url, "stateful", "stateful.toml", "stateful", env, ["--max-examples", "40"])
        if server.proc.poll() is not None:
            raise SystemExit(f"contract: mimserve exited with {server.proc.returncode} during the run")
        calls += [json.loads(line) for line in record.read_text().splitlines()]
        missing = coverage_table(client.schema, calls)
        if missing:
            raise SystemExit(f"contract: never answered 2xx: {', '.join(missing)}")
        print(f"contract: ok in {time.monotonic() - started:.0f} s ({len(calls)} requests)")
    finally:
        server.stop()
        errors = [line for line in (work / "server.log").read_text().splitlines() if "error" in line.lower()]
        if errors:
            print("contract: server log errors:\n  " + "\n  ".join(errors[:20]))
        if os.environ.get("CONTRACT_KEEP"):
            print(f"contract: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
