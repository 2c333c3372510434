-- One row per execution, written when it ends.
CREATE TABLE executions (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    -- The arguments as a JSON array of strings.
    args TEXT NOT NULL,
    cwd TEXT,
    -- How the request came: socket, stdio, tcp or http.
    transport TEXT NOT NULL,
    -- Start time, RFC 3339 in UTC, and the same in milliseconds since the epoch for retention.
    started TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    -- completed, failed, timed_out or cancelled.
    status TEXT NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    cached INTEGER NOT NULL
);

-- No secondary indexes: retention keeps the table small enough to scan, and every index
-- would add pages to each commit.
