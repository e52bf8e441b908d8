-- 0001: channels (positions that outlive retention) and their messages.

CREATE TABLE channels (
    name        TEXT PRIMARY KEY,
    epoch       TEXT NOT NULL,
    last_offset INTEGER NOT NULL,
    last_ts     INTEGER NOT NULL,
    created_ts  INTEGER NOT NULL
) WITHOUT ROWID;

-- A channel's retained messages are always one contiguous run of offsets of its current
-- epoch: appends never leave holes and retention only removes a prefix.
CREATE TABLE messages (
    channel         TEXT NOT NULL,
    offset          INTEGER NOT NULL,
    epoch           TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    data            BLOB NOT NULL,
    attrs           TEXT,
    idempotency_key TEXT,
    PRIMARY KEY (channel, offset)
);

CREATE INDEX messages_by_time ON messages (channel, ts, offset);

CREATE INDEX messages_by_idempotency_key ON messages (channel, idempotency_key, ts)
    WHERE idempotency_key IS NOT NULL;
