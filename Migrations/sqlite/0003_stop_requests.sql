-- A cancel or pause asked of a running job ('cancel' or 'pause'; NULL when none). Written in the
-- same transaction that checks the job's state, and read by the job's trainer at every step, so
-- a request is never lost between a claim and the start of training, nor by a process restart:
-- start-up honours it instead of re-queueing the job. Cleared whenever the job leaves `running`.
ALTER TABLE jobs ADD COLUMN stop_request TEXT;
