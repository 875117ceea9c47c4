-- Checkpoint files move under their own folder (`--checkpoint-dir`, by default
-- <data-dir>/checkpoints, which every node of a cluster mounts): paths are recorded relative
-- to it, so the "checkpoints/" prefix they had relative to the data dir goes. The files
-- themselves stay where they are.
UPDATE checkpoints SET path = substr(path, 13) WHERE path LIKE 'checkpoints/%';
-- The lease under which a trainer wrote the checkpoint: its holder, for people reading the
-- row, and its token, which the write was checked against. NULL for rows written before.
ALTER TABLE checkpoints ADD COLUMN lease_owner TEXT;
ALTER TABLE checkpoints ADD COLUMN lease_token TEXT;
