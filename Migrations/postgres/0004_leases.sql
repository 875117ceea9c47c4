-- The lease a trainer holds on a running job. A claim writes all three; the trainer's heartbeat
-- pushes lease_expires_at forward. A running job whose lease expired (its trainer died, froze or
-- lost the network) is taken back by the next claim, from any node. Every write a trainer makes
-- for the job names lease_token and is refused once it no longer matches, so a trainer that lost
-- its job can never write over the one that took it. All three are NULL outside `running`.
-- Expiry is measured on the database server's clock (now()), so nodes' clocks need not agree.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;      -- the worker that holds the job, for people reading the row
ALTER TABLE jobs ADD COLUMN lease_token TEXT;      -- random per claim
ALTER TABLE jobs ADD COLUMN lease_expires_at TIMESTAMPTZ;
