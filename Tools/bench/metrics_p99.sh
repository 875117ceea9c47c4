#!/usr/bin/env bash
# p99 of GET /v1/jobs/{id}/metrics?max_points=200 on a job with 100 000 metric rows while a tiny job trains.
# Usage: Tools/bench/metrics_p99.sh path/to/mimserve   (needs wrk, curl, python3; traffic to 127.0.0.1 only)
# The rows are inserted straight into the throwaway data directory's SQLite file (the job is cancelled first).
set -euo pipefail
bin="$1"; data=$(mktemp -d /tmp/mimserve-bench-XXXX)
"$bin" serve --port 0 --data-dir "$data" --log-level error > "$data/out.txt" 2>"$data/err.txt" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for i in $(seq 1 300); do grep -q listening "$data/out.txt" && break; sleep 0.1; done
url=$(awk '{print $NF}' "$data/out.txt")
post() { curl -s -X POST "$url$1" -H 'Content-Type: application/json' -d "$2"; }
A=$(post /v1/jobs '{"method":"mae","preset":"tiny","total_steps":100000,"batch_size":4}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
post /v1/jobs/$A/cancel '' > /dev/null
python3 - "$data/mimserve.sqlite" "$A" <<'PY'
import sqlite3, sys, math
db = sqlite3.connect(sys.argv[1], timeout=30)
db.executemany("INSERT OR REPLACE INTO metrics (job_id, step, loss, lr, images_per_s, wall_time_s) VALUES (?, ?, ?, ?, ?, ?)",
               ((sys.argv[2], s, 1.0 / math.sqrt(s), 1e-3, 800.0, s * 0.005) for s in range(1, 100001)))
db.commit()
print("rows:", db.execute("SELECT COUNT(*) FROM metrics WHERE job_id = ?", (sys.argv[2],)).fetchone()[0])
PY
B=$(post /v1/jobs '{"method":"mae","preset":"tiny","total_steps":10000000,"batch_size":16}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for i in $(seq 1 300); do curl -s "$url/v1/jobs/$B" | grep -q '"state":"running"' && break; sleep 0.1; done
curl -s "$url/v1/jobs/$A/metrics?max_points=200" | python3 -c 'import json,sys; m=json.load(sys.stdin)["metrics"]; print("points:", len(m), m[0]["step"], m[-1]["step"])'
echo "training: $(curl -s "$url/v1/jobs/$B" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j["step"])')"
wrk -t2 -c16 -d10s --latency "$url/v1/jobs/$A/metrics?max_points=200"
echo "training after: $(curl -s "$url/v1/jobs/$B" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j["step"])')"
