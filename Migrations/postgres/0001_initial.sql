-- MIMServe schema for PostgreSQL, version 1: the same tables and columns as
-- Migrations/sqlite/0001_initial.sql, in PostgreSQL's types. Migrations are append-only: never
-- edit a file once released; add NNNN_what.sql instead, here and in sqlite/ under the same number.
-- Timestamps are TIMESTAMPTZ (microseconds, UTC on the wire).

CREATE TABLE datasets (
    id           TEXT PRIMARY KEY,            -- 'synthetic', 'fashion-mnist', or a registered folder's id
    kind         TEXT NOT NULL,               -- synthetic | fashion_mnist | samples | folder
    name         TEXT NOT NULL,
    path         TEXT,                        -- folders: relative to the data root
    image_count  INTEGER NOT NULL DEFAULT 0,
    classes_json TEXT,                        -- JSON array of class names, or NULL (unlabelled)
    image_size   INTEGER,                     -- NULL when images vary
    licence      TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    -- Submission order: queued jobs run oldest first. Drawn from a sequence, so nodes that submit
    -- at once never collide.
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    method          TEXT NOT NULL,
    preset          TEXT NOT NULL,
    config_json     TEXT NOT NULL,            -- the fully resolved job configuration
    dataset_id      TEXT NOT NULL,
    state           TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    step            INTEGER NOT NULL DEFAULT 0,
    total_steps     INTEGER NOT NULL,
    loss            DOUBLE PRECISION,
    lr              DOUBLE PRECISION,
    images_per_s    DOUBLE PRECISION,
    eta_s           DOUBLE PRECISION,
    peak_rss_mb     DOUBLE PRECISION,         -- the process's resident memory at its highest while this job trained
    error           TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,                     -- of the submission body, to tell retries from reuse
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_method ON jobs (method, seq);

CREATE TABLE metrics (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step         INTEGER NOT NULL,            -- 1-based: the loss of the step that made it
    loss         DOUBLE PRECISION NOT NULL,
    lr           DOUBLE PRECISION NOT NULL,
    images_per_s DOUBLE PRECISION,
    wall_time_s  DOUBLE PRECISION NOT NULL,   -- training seconds since the job first started
    PRIMARY KEY (job_id, step)
);

CREATE TABLE checkpoints (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    path       TEXT NOT NULL,                 -- relative to the data root
    bytes      BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    is_final   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, step)
);

-- State changes and checkpoints, in order, for live streams to replay what a client missed.
-- A writer locks its job's row before inserting, so one job's ids are committed in order.
CREATE TABLE job_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,                 -- state | checkpoint | evaluation
    data_json  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE evaluations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    dataset_id  TEXT NOT NULL,
    step        INTEGER NOT NULL,             -- the checkpoint evaluated
    result_json TEXT NOT NULL,                -- k-NN and linear-probe accuracies with their baselines
    created_at  TIMESTAMPTZ NOT NULL
);

-- Facts about this database itself (creation time, last readiness probe).
CREATE TABLE instance (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
