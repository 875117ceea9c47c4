-- How many times a job was running when its process died. Start-up re-queues such a job to
-- resume from its last checkpoint, until the count reaches the limit (Store.maxInterruptions):
-- then the job fails, so one job that kills the process cannot keep killing it on every restart.
ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
