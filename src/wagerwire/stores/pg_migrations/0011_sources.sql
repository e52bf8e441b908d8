-- 0011: upstream sources added at run time (`wagerwire sources add`, POST /v1/sources), so
-- they survive a restart and every node of the hub sees the same set. `entry` is the whole
-- [[sources]] entry as JSON, credentials included (they are needed to connect; listings
-- mask them). A removed source's row is deleted. Config [[sources]] are not stored here.
CREATE TABLE sources (
    name       TEXT PRIMARY KEY,
    entry      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
