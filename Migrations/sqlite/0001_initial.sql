-- MIMServe schema, version 1. Migrations are append-only: never edit a file once released;
-- add NNNN_what.sql instead. Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.SSS' (sortable).

CREATE TABLE datasets (
    id           TEXT PRIMARY KEY,            -- 'synthetic', 'fashion-mnist', or a registered folder's id
    kind         TEXT NOT NULL,               -- synthetic | fashion_mnist | samples | folder
    name         TEXT NOT NULL,
    path         TEXT,                        -- folders: relative to the data root
    image_count  INTEGER NOT NULL DEFAULT 0,
    classes_json TEXT,                        -- JSON array of class names, or NULL (unlabelled)
    image_size   INTEGER,                     -- NULL when images vary
    licence      TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL UNIQUE,  -- submission order: queued jobs run oldest first
    method          TEXT NOT NULL,
    preset          TEXT NOT NULL,
    config_json     TEXT NOT NULL,            -- the fully resolved job configuration
    dataset_id      TEXT NOT NULL,
    state           TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    step            INTEGER NOT NULL DEFAULT 0,
    total_steps     INTEGER NOT NULL,
    loss            REAL,
    lr              REAL,
    images_per_s    REAL,
    eta_s           REAL,
    peak_rss_mb     REAL,                     -- the process's resident memory at its highest while this job trained
    error           TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,                     -- of the submission body, to tell retries from reuse
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_method ON jobs (method, seq);

CREATE TABLE metrics (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step         INTEGER NOT NULL,            -- 1-based: the loss of the step that made it
    loss         REAL NOT NULL,
    lr           REAL NOT NULL,
    images_per_s REAL,
    wall_time_s  REAL NOT NULL,               -- training seconds since the job first started
    PRIMARY KEY (job_id, step)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    path       TEXT NOT NULL,                 -- relative to the data root
    bytes      INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    is_final   INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    PRIMARY KEY (job_id, step)
);

-- State changes and checkpoints, in order, for live streams to replay what a client missed.
CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,                 -- state | checkpoint | evaluation
    data_json  TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE evaluations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    dataset_id  TEXT NOT NULL,
    step        INTEGER NOT NULL,             -- the checkpoint evaluated
    result_json TEXT NOT NULL,                -- k-NN and linear-probe accuracies with their baselines
    created_at  TEXT NOT NULL
);

-- Facts about this database file itself (creation time, last readiness probe).
CREATE TABLE instance (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
