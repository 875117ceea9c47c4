#!/usr/bin/env python3
"""Cluster figures on one machine: real `mimserve serve` and `mimserve worker` processes on one
PostgreSQL database (run under Tests/Postgres/with-cluster.sh, which names it in
MIMSERVE_TEST_POSTGRES):

    bash Tests/Postgres/with-cluster.sh python3 Tools/bench/cluster.py .build/release/mimserve

1. Sweep: six tiny MAE jobs (seeds 0-5, --steps each) through one API node (no trainer slots)
   and one worker, then two workers; every worker trains on one thread (MIMSERVE_THREADS=1).
   Prints each sweep's wall time, from the first submission to the last success.
2. Death: two idle workers, one job (seed 0); the worker that trains it is SIGKILLed once the
   job has a checkpoint and rows past it. Prints the time from the kill to the other worker's
   first step of it (for each --lease), and whether the finished job's loss curve equals the
   uninterrupted seed-0 run of the sweep, step for step.
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time, urllib.request, uuid

def start(binary, args, env=None):
    p = subprocess.Popen([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})}, text=True)
    line = p.stdout.readline()
    return p, line.strip().split()[-1]

def call(base, path, body=None):
    req = urllib.request.Request(base + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read().decode()
        return json.loads(text) if text else None

def gauge(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return -1

def job_body(seed, steps, checkpoint_every):
    return {"method": "mae", "preset": "tiny", "total_steps": steps, "batch_size": 8, "seed": seed,
            "overrides": {"checkpoint_every": checkpoint_every}}

def curve(api, job):
    return [(m["step"], m["loss"]) for m in call(api, f"/v1/jobs/{job}/metrics")["metrics"]]

def wait(what, predicate, timeout=3600, interval=0.01):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(interval)

class Cluster:
    def __init__(self, binary, lease):
        base = os.environ["MIMSERVE_TEST_POSTGRES"]
        self.db = base + ("&" if "?" in base else "?") + "schema=b_" + uuid.uuid4().hex[:12]
        self.binary, self.lease = binary, lease
        self.data = tempfile.mkdtemp(prefix="mimserve-cluster-bench-")
        self.api_proc, self.api = start(binary, ["serve", "--port", "0", "--data-dir", self.data, "--database", self.db,
                                                 "--trainer-slots", "0", "--log-level", "error"])
        self.workers = []

    def add_worker(self):
        p, url = start(self.binary, ["worker", "--port", "0", "--data-dir", self.data, "--database", self.db,
                                     "--lease-seconds", str(self.lease), "--log-level", "error"],
                       env={"MIMSERVE_THREADS": "1"})
        self.workers.append((p, url))
        return p, url

    def close(self):
        for p, _ in self.workers + [(self.api_proc, None)]:
            if p.poll() is None:
                p.terminate()
                p.wait()

def sweep(binary, workers, steps):
    c = Cluster(binary, 30)
    try:
        for _ in range(workers):
            c.add_worker()
        started = time.monotonic()
        ids = [call(c.api, "/v1/jobs", job_body(seed, steps, 100))["id"] for seed in range(6)]
        wait("the sweep", lambda: all(call(c.api, f"/v1/jobs/{i}")["state"] in ("succeeded", "failed") for i in ids), interval=0.05)
        wall = time.monotonic() - started
        states = [call(c.api, f"/v1/jobs/{i}")["state"] for i in ids]
        assert states == ["succeeded"] * 6, states
        return wall, curve(c.api, ids[0])
    finally:
        c.close()

def death(binary, lease, steps, reference):
    c = Cluster(binary, lease)
    try:
        w1, w2 = c.add_worker(), c.add_worker()
        job = call(c.api, "/v1/jobs", job_body(0, steps, 100))["id"]
        def mid_job():
            j = call(c.api, f"/v1/jobs/{job}")
            cks = call(c.api, f"/v1/jobs/{job}/checkpoints")["checkpoints"]
            return j["state"] == "running" and cks and j["step"] > cks[-1]["step"] and j["worker"]
        wait("a checkpoint and rows past it", mid_job)
        owner = call(c.api, f"/v1/jobs/{job}")["worker"]
        victim, other = (w1, w2) if owner.endswith(f":{w1[0].pid}") else (w2, w1)
        victim[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim[0].wait()
        wait("the other worker's first step", lambda: gauge(other[1], "mimserve_training_steps_completed") > 0, interval=0.005)
        resumed_after = time.monotonic() - killed
        wait("the job's end", lambda: call(c.api, f"/v1/jobs/{job}")["state"] in ("succeeded", "failed"), interval=0.05)
        final = call(c.api, f"/v1/jobs/{job}")
        got = curve(c.api, job)
        return resumed_after, final["state"], final["interruptions"], got == reference, len(got)
    finally:
        c.close()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lease", type=float, action="append")
    a = ap.parse_args()
    leases = a.lease or [5.0, 30.0]
    results = {}
    for workers in (1, 2):
        wall, ref = sweep(a.binary, workers, a.steps)
        results[workers] = wall
        print(json.dumps({"bench": "cluster-sweep", "jobs": 6, "steps": a.steps, "workers": workers,
                          "threads_per_worker": 1, "wall_s": round(wall, 2)}), flush=True)
    print(json.dumps({"bench": "cluster-sweep-speedup", "two_vs_one": round(results[1] / results[2], 3)}), flush=True)
    for lease in leases:
        after, state, interruptions, equal, n = death(a.binary, lease, a.steps, ref)
        print(json.dumps({"bench": "cluster-death", "lease_s": lease, "resumed_after_s": round(after, 2), "state": state,
                          "interruptions": interruptions, "curve_equals_uninterrupted": equal, "steps": n}), flush=True)

if __name__ == "__main__":
    main()
