-- 0002: the key store in PostgreSQL (API keys, stream-token signing keys, Pusher apps), so
-- every node of a scale-out hub shares one set (stores/pg_keys.py). Times are Unix seconds.

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL,
    role         TEXT NOT NULL,
    plan         TEXT NOT NULL,
    user_id      TEXT,
    name         TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    last_used_at DOUBLE PRECISION,
    revoked_at   DOUBLE PRECISION,
    prefix       TEXT NOT NULL DEFAULT 'ww_'  -- ww_ or os_live_ (listings show it)
);

-- The periodic re-check of revocations reads only the revoked keys.
CREATE INDEX api_keys_revoked ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    retired_at DOUBLE PRECISION
);

CREATE TABLE pusher_apps (
    app_id                TEXT PRIMARY KEY,
    key                   TEXT NOT NULL UNIQUE,
    secret                TEXT NOT NULL,
    plan                  TEXT NOT NULL,
    client_events         BOOLEAN NOT NULL,
    max_client_events     INTEGER NOT NULL,
    encryption_master_key TEXT,
    webhook_url           TEXT,
    builtin               BOOLEAN NOT NULL,
    created_at            DOUBLE PRECISION NOT NULL
);

-- Every node's heartbeat (the dashboard and /metrics list the nodes of the hub).
CREATE TABLE nodes (
    node_id    TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    seen_at    DOUBLE PRECISION NOT NULL,
    broker     TEXT NOT NULL,
    broker_ok  BOOLEAN NOT NULL,
    store      TEXT NOT NULL,
    store_ok   BOOLEAN NOT NULL,
    streams    INTEGER NOT NULL
);
