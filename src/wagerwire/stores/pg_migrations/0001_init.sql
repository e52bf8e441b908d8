-- 0001: channels (positions that outlive retention) and their messages, for PostgreSQL.

CREATE TABLE channels (
    name        TEXT PRIMARY KEY,
    epoch       TEXT NOT NULL,
    last_offset BIGINT NOT NULL,
    last_ts     BIGINT NOT NULL,
    created_ts  BIGINT NOT NULL
);

-- A channel's retained messages are always one contiguous run of offsets of its current
-- epoch: appends never leave holes and retention only removes a prefix. The primary key is
-- the index of reads by offset (read, read_last, resume).
CREATE TABLE messages (
    channel         TEXT NOT NULL,
    "offset"        BIGINT NOT NULL,
    epoch           TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    data            BYTEA NOT NULL,
    attrs           TEXT,
    idempotency_key TEXT,
    PRIMARY KEY (channel, "offset")
);

-- Reads by time (read_by_time, retention by age).
CREATE INDEX messages_by_time ON messages (channel, ts, "offset");

CREATE INDEX messages_by_idempotency_key ON messages (channel, idempotency_key, ts)
    WHERE idempotency_key IS NOT NULL;
