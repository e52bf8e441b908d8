-- 0002: upstream sources added at run time (`wagerwire sources add`, POST /v1/sources), so
-- they survive a restart. `entry` is the whole [[sources]] entry as JSON, credentials
-- included (they are needed to connect; listings mask them). A removed source's row is
-- deleted. Config [[sources]] are not stored here: the config file is their home.
CREATE TABLE sources (
    name       TEXT PRIMARY KEY,
    entry      TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
