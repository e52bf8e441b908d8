-- 0010: one group commit in one statement (one round trip instead of six).
--
-- ww_append takes a batch of messages as arrays, in queue order, and does in one implicit
-- transaction what the writer did in BEGIN / lock / read positions / INSERT / upsert / COMMIT:
-- a transaction-level advisory lock per channel (fixed order: two writers cannot deadlock),
-- the channels' positions read under the lock, the no-hole check of every message (offset =
-- stored last + 1, or 1 in a new epoch; a new epoch deletes the channel's old history), the
-- insert of the accepted rows and the positions' upsert. It returns the 1-based indexes of
-- the refused messages with the position each was checked against (epoch NULL: a new
-- channel).
CREATE FUNCTION ww_append(
    p_channel TEXT[], p_offset BIGINT[], p_epoch TEXT[], p_ts BIGINT[], p_data BYTEA[],
    p_attrs TEXT[], p_key TEXT[],
    OUT refused INT[], OUT refused_epoch TEXT[], OUT refused_last BIGINT[]
) LANGUAGE plpgsql AS $$
DECLARE
    n INT := coalesce(array_length(p_channel, 1), 0);
    names TEXT[];
    epochs TEXT[];
    lasts BIGINT[];
    last_ts BIGINT[];
    changed BOOLEAN[];
    keep BOOLEAN[] := array_fill(FALSE, ARRAY[n]);
    c INT;
    expected BIGINT;
BEGIN
    refused := '{}';
    refused_epoch := '{}';
    refused_last := '{}';
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(h) FROM (
        SELECT DISTINCT hashtextextended(x, 0) AS h FROM unnest(p_channel) AS x ORDER BY 1
    ) AS s;
    SELECT array_agg(u.x), array_agg(ch.epoch), array_agg(ch.last_offset)
        INTO names, epochs, lasts
        FROM (SELECT DISTINCT x FROM unnest(p_channel) AS x) AS u
        LEFT JOIN channels ch ON ch.name = u.x;
    last_ts := array_fill(NULL::BIGINT, ARRAY[array_length(names, 1)]);
    changed := array_fill(FALSE, ARRAY[array_length(names, 1)]);
    FOR i IN 1 .. n LOOP
        c := array_position(names, p_channel[i]);
        IF epochs[c] IS NULL OR epochs[c] <> p_epoch[i] THEN
            expected := 1;
        ELSE
            expected := lasts[c] + 1;
        END IF;
        IF p_offset[i] <> expected THEN
            refused := refused || i;
            refused_epoch := refused_epoch || epochs[c];
            refused_last := refused_last || lasts[c];
            CONTINUE;
        END IF;
        IF epochs[c] IS NOT NULL AND epochs[c] <> p_epoch[i] THEN
            -- The channel restarts: its old history (and this batch's rows of the old
            -- epoch) is gone for good.
            DELETE FROM messages WHERE channel = p_channel[i];
            FOR j IN 1 .. i - 1 LOOP
                IF p_channel[j] = p_channel[i] THEN
                    keep[j] := FALSE;
                END IF;
            END LOOP;
        END IF;
        epochs[c] := p_epoch[i];
        lasts[c] := p_offset[i];
        last_ts[c] := p_ts[i];
        changed[c] := TRUE;
        keep[i] := TRUE;
    END LOOP;
    INSERT INTO messages (channel, "offset", epoch, ts, data, attrs, idempotency_key)
        SELECT u.c, u.o, u.e, u.t, u.d, u.a, u.k
        FROM unnest(p_channel, p_offset, p_epoch, p_ts, p_data, p_attrs, p_key, keep)
            AS u(c, o, e, t, d, a, k, keep)
        WHERE u.keep;
    INSERT INTO channels (name, epoch, last_offset, last_ts, created_ts)
        SELECT u.x, u.e, u.o, u.t, u.t
        FROM unnest(names, epochs, lasts, last_ts, changed) AS u(x, e, o, t, ch)
        WHERE u.ch
        ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch,
            last_offset = excluded.last_offset, last_ts = excluded.last_ts;
END
$$;
