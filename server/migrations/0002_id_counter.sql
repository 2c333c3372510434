-- Execution ids are handed out in blocks from this counter, so that every process writing this
-- history (the daemon, and `--stdio` sessions of the same name) uses ids no other one uses.
CREATE TABLE id_counter (next INTEGER NOT NULL);
INSERT INTO id_counter (next) SELECT COALESCE(MAX(id), 0) + 1 FROM executions;
