#!/usr/bin/env python3
"""Writes Public/openapi.json, the OpenAPI 3.1 description of MIMServe's HTTP API.

The document is kept as Python data because it is easier to edit than raw JSON.
Regenerate after changing a route:  python3 Tools/openapi/make_openapi.py
ServerTests checks that the routes the server registers and the paths here are the same.
"""
import json
import pathlib

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}

def nullable(t):
    return {"type": [t, "null"]}

PROBLEM = {"application/problem+json": {"schema": ref("Problem")}}

def sse_event(name, data):
    return {"properties": {"event": {"const": name},
                           "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}}}

def problems(*codes):
    text = {400: "Malformed request", 401: "Missing or wrong bearer token", 403: "A change from a web page of another origin",
            404: "No such resource", 421: "The Host header names a host this server does not answer to (see --allowed-host)",
            409: "Illegal in the resource's current state", 410: "The file is gone", 413: "Body too large",
            415: "Unsupported content type (JSON bodies need Content-Type: application/json)", 422: "Invalid field (see errors)",
            429: "Too many jobs queued; retry after Retry-After seconds", 503: "Busy; retry after Retry-After seconds"}
    return {str(c): {"description": text[c], "content": PROBLEM} for c in codes}

def ok(schema, description="OK", status="200", content_type="application/json"):
    return {status: {"description": description, "content": {content_type: {"schema": schema}}}}

ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Job id"}
STEP_Q = {"name": "step", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647},
          "description": "Checkpoint step (default: the latest)"}
METHODS = ["mae", "simmim", "ummae", "greenmim", "mixmae", "convmae"]
STATES = "(queued|running|paused|succeeded|failed|cancelled)"
# An event stream's cursor, as every event's id carries it (event id:metric step).
CURSOR = {"type": "string", "pattern": "^[0-9]{1,18}:[0-9]{1,18}$"}
IMAGE_BODY = {"required": True, "content": {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}

job_schema = {
    "type": "object",
    "required": ["id", "state", "method", "preset", "dataset", "config", "estimate", "step", "total_steps", "loss", "lr",
                 "images_per_s", "eta_s", "peak_rss_mb", "error", "created_at", "started_at", "finished_at", "updated_at"],
    "properties": {
        "id": {"type": "string"}, "state": ref("JobState"), "method": {"type": "string"}, "preset": {"type": "string"},
        "dataset": {"type": "string"}, "config": {"type": ["object", "null"], "description": "The fully resolved configuration"},
        "estimate": {"oneOf": [ref("CostEstimate"), {"type": "null"}],
                     "description": "The cost model's estimate of this job's peak memory, checkpoint size and FLOPs per step"},
        "step": {"type": "integer"}, "total_steps": {"type": "integer"}, "loss": nullable("number"), "lr": nullable("number"),
        "images_per_s": nullable("number"), "eta_s": nullable("number"), "peak_rss_mb": nullable("number"),
        "error": nullable("string"), "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

schemas = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"], "properties": {
            "field": {"type": "string"}, "reason": {"type": "string"}}}},
        "error_id": {"type": "string", "description": "On a 5xx: the id the server's log line for this failure carries"}}},
    "JobState": {"type": "string", "enum": ["queued", "running", "paused", "succeeded", "failed", "cancelled"]},
    "JobRequest": {"type": "object", "required": ["method"], "properties": {
        "method": {"type": "string", "description": "mae, simmim, ummae, greenmim, mixmae or convmae"},
        "preset": {"type": "string", "description": "A preset name, or tiny / default", "default": "default"},
        "dataset": {"type": "string", "default": "synthetic"},
        "total_steps": {"type": "integer", "minimum": 1, "maximum": 10000000, "default": 1000},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 4096},
        "seed": {"type": "integer", "minimum": 0},
        "overrides": {"type": "object", "description": "Any model or training field of GET /v1/methods"}}},
    "Job": job_schema,
    "CostEstimate": {"type": "object", "required": ["parameters", "weight_bytes", "optimizer_bytes", "activation_bytes",
                                                    "prefetch_bytes", "checkpoint_bytes", "flops_per_step", "peak_bytes"],
                     "properties": {**{k: {"type": "integer", "minimum": 0} for k in (
                         "parameters", "weight_bytes", "optimizer_bytes", "activation_bytes", "prefetch_bytes",
                         "checkpoint_bytes", "peak_bytes")}, "flops_per_step": {"type": "number", "minimum": 0}},
                     "description": "What training costs: peak_bytes is what --max-job-memory limits"},
    "JobList": {"type": "object", "required": ["jobs", "next_page_token"], "properties": {
        "jobs": {"type": "array", "items": ref("Job")}, "next_page_token": nullable("string")}},
    "Metric": {"type": "object", "required": ["step", "loss", "lr", "images_per_s", "wall_time_s"], "properties": {
        "step": {"type": "integer"}, "loss": {"type": "number"}, "lr": {"type": "number"},
        "images_per_s": nullable("number"), "wall_time_s": {"type": "number"}}},
    "MetricList": {"type": "object", "required": ["job_id", "metrics"], "properties": {
        "job_id": {"type": "string"}, "metrics": {"type": "array", "items": ref("Metric")}}},
    "Checkpoint": {"type": "object", "required": ["step", "bytes", "sha256", "final", "created_at", "url"], "properties": {
        "step": {"type": "integer"}, "bytes": {"type": "integer"}, "sha256": {"type": "string"}, "final": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"}, "url": {"type": "string"}}},
    "CheckpointList": {"type": "object", "required": ["checkpoints"], "properties": {
        "checkpoints": {"type": "array", "items": ref("Checkpoint")}}},
    "Dataset": {"type": "object", "required": ["id", "kind", "name", "count"], "properties": {
        "id": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"}, "count": {"type": "integer"},
        "classes": {"type": "array", "items": {"type": "string"}}, "licence": {"type": "string"}}},
    "DatasetList": {"type": "object", "required": ["datasets"], "properties": {"datasets": {"type": "array", "items": ref("Dataset")}}},
    "Methods": {"type": "object", "required": ["methods", "fields"], "properties": {
        "methods": {"type": "array", "items": {"type": "object", "required": ["name", "summary", "presets"], "properties": {
            "name": {"type": "string"}, "summary": {"type": "string"},
            "presets": {"type": "array", "items": {"type": "object", "required": ["name", "summary", "tiny", "default", "model", "training", "estimate"],
                                                    "properties": {"estimate": ref("CostEstimate")}}}}}},
        "fields": {"type": "array", "items": {"type": "object", "required": ["name", "group", "type", "help"]}}}},
    "Accuracies": {"type": "object", "required": ["encoder", "raw_pixels", "random_encoder"], "properties": {
        "encoder": {"type": "number"}, "raw_pixels": {"type": "number"}, "random_encoder": {"type": "number"}}},
    "Evaluation": {"type": "object", "required": ["id", "dataset", "step", "created_at", "result"], "properties": {
        "id": {"type": "integer"}, "dataset": {"type": "string"}, "step": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "result": {"type": "object", "properties": {"knn": ref("Accuracies"), "linear_probe": ref("Accuracies")}}}},
    # One Server-Sent Event of GET /v1/jobs/{id}/events (OpenAPI 3.1: the schema of an event stream
    # describes each event); `data` is JSON. Keep-alive comments are not events.
    "JobEvent": {"type": "object", "required": ["event", "id", "data"], "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+:[0-9]+$", "description": "The stream cursor: send it back as Last-Event-ID"}},
        "oneOf": [sse_event("state", {"type": "object", "required": ["state", "error"], "properties": {
                      "state": ref("JobState"), "error": nullable("string"), "reason": {"type": "string"}}}),
                  sse_event("progress", {"type": "object", "required": ["step", "total_steps", "loss", "lr", "images_per_s", "eta_s"],
                      "properties": {"step": {"type": "integer"}, "total_steps": {"type": "integer"}, "loss": nullable("number"),
                                     "lr": nullable("number"), "images_per_s": nullable("number"), "eta_s": nullable("number")}}),
                  sse_event("metric", ref("Metric")),
                  sse_event("checkpoint", {"type": "object", "required": ["step", "bytes", "sha256", "final"], "properties": {
                      "step": {"type": "integer"}, "bytes": {"type": "integer"}, "sha256": {"type": "string"}, "final": {"type": "boolean"}}}),
                  sse_event("evaluation", {"type": "object", "required": ["id", "dataset", "step"], "properties": {
                      "id": {"type": "integer"}, "dataset": {"type": "string"}, "step": {"type": "integer"}}}),
                  sse_event("end", {"type": "object", "required": ["reason"], "description":
                      "The last event of a stream whose job was deleted, or whose server is shutting down (reconnect later)",
                      "properties": {"reason": {"type": "string", "enum": ["deleted", "shutdown"]}}})]},
    "EvaluationOptions": {"type": "object", "description": "Every field is optional; a missing one keeps its default", "properties": {
        "train_limit": {"type": "integer", "minimum": 10, "maximum": 50000, "default": 2000},
        "test_limit": {"type": "integer", "minimum": 10, "maximum": 10000, "default": 500},
        "k": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
        "temperature": {"type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 0.07},
        "probe_epochs": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 300},
        "probe_lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 0.01}}},
    "EvaluationList": {"type": "object", "required": ["evaluations"], "properties": {
        "evaluations": {"type": "array", "items": ref("Evaluation")}}},
    "Features": {"type": "object", "required": ["job_id", "step", "pool", "dim", "tokens", "count", "features"], "properties": {
        "job_id": {"type": "string"}, "step": {"type": "integer"}, "pool": {"type": "string"}, "dim": {"type": "integer"},
        "tokens": nullable("integer"), "count": {"type": "integer"},
        "features": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}},
    "ReconstructionInfo": {"type": "object", "required": ["job_id", "step", "mask_ratio", "seed", "image_size",
                                                           "masked_fraction", "masked_mse", "png_base64"], "properties": {
        "job_id": {"type": "string"}, "step": {"type": "integer"}, "mask_ratio": {"type": "number"}, "seed": {"type": "integer"},
        "image_size": {"type": "integer"}, "masked_fraction": {"type": "number"}, "masked_mse": {"type": "number"},
        "note": nullable("string"), "png_base64": {"type": "string"}}},
}

lifecycle = lambda verb, what: {"post": {"summary": f"{verb} a job", "description": what, "parameters": [ID],
                                         "responses": {**ok(ref("Job")), **problems(401, 404, 409)}}}

paths = {
    "/healthz": {"get": {"summary": "Liveness", "responses": ok({"type": "object", "required": ["status"]})}},
    "/readyz": {"get": {"summary": "Readiness: database writable, migrations applied, trainer pool running", "responses": {
        **ok({"type": "object", "required": ["status", "checks"]}),
        "503": {"description": "Not ready", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": ok({"type": "string"}, content_type="text/plain")}},
    "/openapi.json": {"get": {"summary": "This document", "responses": ok({"type": "object"})}},
    "/v1/methods": {"get": {"summary": "Methods, presets and overridable fields", "responses": ok(ref("Methods"))}},
    "/v1/datasets": {
        "get": {"summary": "Datasets", "responses": ok(ref("DatasetList"))},
        "post": {"summary": "Register (or rescan) an image folder under <data-dir>/datasets/<id>", "requestBody": {
            "required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string", "pattern": "^[a-z0-9_][a-z0-9_-]{0,63}$",
                       "description": "The folder's name; not a built-in id (synthetic, fashion-mnist, fashion-mnist-test, samples)"}}}}}},
            "responses": {**ok(ref("Dataset"), "Registered", "201"), **problems(400, 401, 413, 415, 422)}}},
    "/v1/datasets/{id}": {"get": {"summary": "One dataset", "parameters": [{**ID, "description": "Dataset id"}],
                                  "responses": {**ok(ref("Dataset")), **problems(404, 422)}}},
    "/v1/jobs": {
        "post": {"summary": "Submit a job", "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": ref("JobRequest")}}},
                 "responses": {**ok(ref("Job"), "Created", "201"), **ok(ref("Job"), "The job of an earlier identical request"),
                               **problems(400, 401, 413, 415, 422, 429)}},
        "get": {"summary": "List jobs, newest first", "parameters": [
            {"name": "state", "in": "query", "schema": {"type": "string", "pattern": f"^{STATES}(,{STATES})*$"},
             "description": "Comma-separated states"},
            {"name": "method", "in": "query", "schema": {"type": "string", "enum": METHODS}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
            {"name": "page_token", "in": "query", "schema": {"type": "string"}}],
            "responses": {**ok(ref("JobList")), **problems(422)}}},
    "/v1/jobs/{id}": {
        "get": {"summary": "One job", "parameters": [ID], "responses": {**ok(ref("Job")), **problems(404)}},
        "delete": {"summary": "Delete a job that is not running, with its files", "parameters": [ID],
                   "responses": {"204": {"description": "Deleted"}, **problems(401, 404, 409)}}},
    "/v1/jobs/{id}/cancel": lifecycle("Cancel", "Queued and paused jobs stop at once; a running job at its next step."),
    "/v1/jobs/{id}/pause": lifecycle("Pause", "A running job checkpoints at its next step and waits, paused."),
    "/v1/jobs/{id}/resume": lifecycle("Resume", "A paused job goes back to the queue and continues from its checkpoint."),
    "/v1/jobs/{id}/metrics": {"get": {"summary": "Loss history", "parameters": [ID,
        {"name": "after_step", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647}},
        {"name": "max_points", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000000}},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}}],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref("MetricList")},
                                                               "text/csv": {"schema": {"type": "string"}}}},
                      **problems(404, 422)}}},
    "/v1/jobs/{id}/events": {"get": {"summary": "Live events (SSE): progress, metric, state, checkpoint, evaluation, end",
        "description": "Ends after a terminal state, or with an `end` event when the job is deleted or the server shuts down. "
                       "Last-Event-ID (or ?last_event_id=, ?after_step=) replays what was missed. At most --max-streams are open "
                       "at once; one more gets 503 with Retry-After.",
        "parameters": [ID, {"name": "Last-Event-ID", "in": "header", "schema": CURSOR},
                       {"name": "last_event_id", "in": "query", "schema": CURSOR},
                       {"name": "after_step", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647}}],
        "responses": {**ok(ref("JobEvent"), content_type="text/event-stream"), **problems(404, 422, 503)}}},
    "/v1/jobs/{id}/checkpoints": {"get": {"summary": "Checkpoints", "parameters": [ID],
                                          "responses": {**ok(ref("CheckpointList")), **problems(404)}}},
    "/v1/jobs/{id}/checkpoints/{step}": {"get": {"summary": "Download a checkpoint (safetensors)", "parameters": [
        ID, {"name": "step", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {**ok({"type": "string", "format": "binary"}, content_type="application/octet-stream"),
                      **problems(404, 410, 422)}}},
    "/v1/jobs/{id}/reconstruct": {"post": {"summary": "Reconstruction strip: original · masked · reconstruction · reconstruction + visible",
        "parameters": [ID, {"name": "mask_ratio", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}},
                       {"name": "seed", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647}},
                       STEP_Q, {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["png", "json"]}}],
        "requestBody": IMAGE_BODY,
        "responses": {"200": {"description": "OK", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                                                               "application/json": {"schema": ref("ReconstructionInfo")}}},
                      **problems(401, 404, 409, 413, 415, 422, 503)}}},
    "/v1/jobs/{id}/features": {"post": {"summary": "Encoder features of one image (raw body) or several ({\"images\": [base64…]})",
        "parameters": [ID, {"name": "pool", "in": "query", "schema": {"type": "string", "enum": ["mean", "cls", "none"]}}, STEP_Q],
        "requestBody": {"required": True, "content": {**IMAGE_BODY["content"], "application/json": {"schema": {
            "type": "object", "required": ["images"], "properties": {"images": {"type": "array", "items": {"type": "string"}}}}}}},
        "responses": {**ok(ref("Features")), **problems(400, 401, 404, 409, 413, 415, 422, 503)}}},
    "/v1/jobs/{id}/evaluate": {"post": {"summary": "k-NN and linear-probe accuracy vs raw pixels and a random encoder",
        "parameters": [ID], "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
            "dataset": {"type": ["string", "null"], "default": "synthetic"},
            "step": {"type": ["integer", "null"], "description": "Checkpoint step (default or null: the latest)"},
            "options": {"anyOf": [ref("EvaluationOptions"), {"type": "null"}]}}}}}},
        "responses": {**ok(ref("Evaluation"), "Evaluated", "201"), **problems(400, 401, 404, 409, 413, 415, 422, 503)}}},
    "/v1/jobs/{id}/evaluations": {"get": {"summary": "Stored evaluations", "parameters": [ID],
                                          "responses": {**ok(ref("EvaluationList")), **problems(404)}}},
}

# What every operation may answer besides its own responses: a Host outside the allow-list (421, or 400
# without one); with a token, 401 for reads under /v1/ and /metrics (--auth-reads) and for every change;
# 403 for a change whose Origin is another site's.
OPEN_READS = {"/healthz", "/readyz", "/openapi.json"}
for path, ops in paths.items():
    for method, op in ops.items():
        extra = [400, 421]
        if method != "get" or path not in OPEN_READS:
            extra.append(401)
            op["security"] = [{"bearer": []}, {}]
        if method in ("post", "put", "patch", "delete"):
            extra.append(403)
        for code, response in problems(*extra).items():
            op["responses"].setdefault(code, response)

# Every operation's id, which links name.
OPERATION_IDS = {
    ("get", "/healthz"): "getHealth", ("get", "/readyz"): "getReadiness", ("get", "/metrics"): "getServerMetrics",
    ("get", "/openapi.json"): "getOpenAPI", ("get", "/v1/methods"): "listMethods",
    ("get", "/v1/datasets"): "listDatasets", ("post", "/v1/datasets"): "registerDataset", ("get", "/v1/datasets/{id}"): "getDataset",
    ("post", "/v1/jobs"): "submitJob", ("get", "/v1/jobs"): "listJobs",
    ("get", "/v1/jobs/{id}"): "getJob", ("delete", "/v1/jobs/{id}"): "deleteJob",
    ("post", "/v1/jobs/{id}/cancel"): "cancelJob", ("post", "/v1/jobs/{id}/pause"): "pauseJob",
    ("post", "/v1/jobs/{id}/resume"): "resumeJob", ("get", "/v1/jobs/{id}/metrics"): "getJobMetrics",
    ("get", "/v1/jobs/{id}/events"): "streamJobEvents", ("get", "/v1/jobs/{id}/checkpoints"): "listCheckpoints",
    ("get", "/v1/jobs/{id}/checkpoints/{step}"): "downloadCheckpoint", ("post", "/v1/jobs/{id}/reconstruct"): "reconstruct",
    ("post", "/v1/jobs/{id}/features"): "extractFeatures", ("post", "/v1/jobs/{id}/evaluate"): "evaluateJob",
    ("get", "/v1/jobs/{id}/evaluations"): "listEvaluations",
}
for (method, path), op_id in OPERATION_IDS.items():
    paths[path][method]["operationId"] = op_id
assert {(m, p) for p, ops in paths.items() for m in ops} == set(OPERATION_IDS), "every operation needs an operationId"

# Links (OpenAPI 3.1 §4.8.20): where a response names a job, every operation on /v1/jobs/{id} can follow it.
# Schemathesis' stateful phase walks them: submit → pause → resume → cancel → delete and the reads between.
JOB_OPERATIONS = [op_id for (method, path), op_id in OPERATION_IDS.items() if path.startswith("/v1/jobs/{id}")]
LIFECYCLE = ["getJob", "streamJobEvents", "pauseJob", "resumeJob", "cancelJob", "deleteJob"]

def job_links(expression, which, targets=JOB_OPERATIONS):
    return {op_id[0].upper() + op_id[1:]: {"operationId": op_id, "parameters": {"id": expression}, "description": which}
            for op_id in targets}

def link(method, path, status, links):
    paths[path][method]["responses"][status]["links"] = links

link("post", "/v1/jobs", "201", job_links("$response.body#/id", "The job just submitted"))
link("post", "/v1/jobs", "200", job_links("$response.body#/id", "The job of the earlier identical request"))
link("get", "/v1/jobs", "200", job_links("$response.body#/jobs/0/id", "The first job listed"))
for path in ["/v1/jobs/{id}", "/v1/jobs/{id}/cancel", "/v1/jobs/{id}/pause", "/v1/jobs/{id}/resume"]:
    method = "get" if path == "/v1/jobs/{id}" else "post"
    link(method, path, "200", job_links("$response.body#/id", "The same job", LIFECYCLE))
link("get", "/v1/jobs/{id}/checkpoints", "200", {"DownloadCheckpoint": {
    "operationId": "downloadCheckpoint", "parameters": {"id": "$request.path.id", "step": "$response.body#/checkpoints/0/step"},
    "description": "The oldest checkpoint listed"}})

document = {
    "openapi": "3.1.0",
    "info": {"title": "MIMServe", "version": "1.0.0",
             "description": "Masked-image-modeling pretraining server: jobs, live losses, reconstructions and features.\n\n"
                            "Browser safety: the Host header must name the server (the bound address, localhost, 127.0.0.1, [::1], "
                            "or a --allowed-host), else 421; a POST/PUT/PATCH/DELETE with an Origin of another site gets 403; JSON "
                            "bodies need Content-Type: application/json (else 415). With a token, changes and reads under /v1/ and "
                            "/metrics need `Authorization: Bearer <token>` (the token is never read from the query string); "
                            "/healthz, /readyz, /openapi.json and the dashboard stay open."},
    "servers": [{"url": "http://127.0.0.1:8080"}],
    "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": paths,
}

out = pathlib.Path(__file__).resolve().parents[2] / "Public" / "openapi.json"
out.parent.mkdir(exist_ok=True)
out.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
print(f"wrote {out}")
