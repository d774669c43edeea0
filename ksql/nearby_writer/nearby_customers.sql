-- The NEARBY_CUSTOMERS writer: ksqlDB's implementation of DESIGN.md's proximity rule, run only
-- when NEARBY_ENGINE=ksqldb. Not a migration: `instore ksql migrate` applies ksql/migrations/
-- (which declare the NEARBY_CUSTOMERS stream) and then starts this statement when NEARBY_ENGINE
-- is ksqldb and no query writes NEARBY_CUSTOMERS, or terminates the query that writes it when
-- NEARBY_ENGINE is faust (the Faust worker's proximity agent writes the topic then). See which
-- one runs with `instore ksql query "SHOW QUERIES"` (a query whose sink is NEARBY_CUSTOMERS).
-- It starts at the end of customers_locations (ksqlDB's default auto.offset.reset, latest), so
-- positions the Faust worker already matched before a switch are not matched a second time.
--
-- DESIGN.md's proximity rule: a position of shopper uid in store s at time t
-- is near product p for promotion q when p is in s, q targets p's SKU (or, without a SKU, its
-- segment), q.starts_at <= t < q.ends_at (open ends allowed) and
-- GEO_DISTANCE(position, p, 'km') * 3280.8399 <= q.radius_ft.
--
-- Where ksqlDB's SQL forces a different shape than the Faust engine:
--  * positions join STORE_PROMOTION_PAIRS on store_id (a stream-table join must use the
--    table's primary key), so one joined row holds every (product, promotion) pair of the store,
--  * WHERE runs before a table function, so the rule is a FILTER lambda over the pairs, and the
--    surviving pairs become rows with EXPLODE. The value of an EXPLODE cannot be referenced in
--    the same SELECT, so each output column is its own EXPLODE over the same filtered array
--    (ksqlDB zips table functions of one SELECT row by row),
--  * a position without store_id joins nothing (ksqlDB has no geofence lookup, the Faust
--    engine places it by geofence),
--  * the output columns are quoted in lower case so the topic carries the contract's fields,
--    and AS_VALUE keeps uid in the value once PARTITION BY moves it into the key.
-- The local endpoint evaluates the FILTER once per position (the repeated expression is the
-- same) with a grid index over each store's pairs: physical plan choices, the rows are the
-- ones the SQL defines.

INSERT INTO NEARBY_CUSTOMERS
  SELECT
    p.uid AS uid,
    AS_VALUE(p.uid) AS `uid`,
    s.store_id AS `store_id`,
    EXPLODE(TRANSFORM(FILTER(s.pairs, x =>
        GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399 <= x->radius_ft
        AND (x->starts_at IS NULL OR x->starts_at <= COALESCE(p.ts, p.ROWTIME))
        AND (x->ends_at IS NULL OR COALESCE(p.ts, p.ROWTIME) < x->ends_at)),
      x => x->pid)) AS `pid`,
    EXPLODE(TRANSFORM(FILTER(s.pairs, x =>
        GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399 <= x->radius_ft
        AND (x->starts_at IS NULL OR x->starts_at <= COALESCE(p.ts, p.ROWTIME))
        AND (x->ends_at IS NULL OR COALESCE(p.ts, p.ROWTIME) < x->ends_at)),
      x => x->sku)) AS `sku`,
    EXPLODE(TRANSFORM(FILTER(s.pairs, x =>
        GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399 <= x->radius_ft
        AND (x->starts_at IS NULL OR x->starts_at <= COALESCE(p.ts, p.ROWTIME))
        AND (x->ends_at IS NULL OR COALESCE(p.ts, p.ROWTIME) < x->ends_at)),
      x => x->segment)) AS `segment`,
    EXPLODE(TRANSFORM(FILTER(s.pairs, x =>
        GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399 <= x->radius_ft
        AND (x->starts_at IS NULL OR x->starts_at <= COALESCE(p.ts, p.ROWTIME))
        AND (x->ends_at IS NULL OR COALESCE(p.ts, p.ROWTIME) < x->ends_at)),
      x => GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399)) AS `distance_ft`,
    p.latitude AS `latitude`,
    p.longitude AS `longitude`,
    EXPLODE(TRANSFORM(FILTER(s.pairs, x =>
        GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399 <= x->radius_ft
        AND (x->starts_at IS NULL OR x->starts_at <= COALESCE(p.ts, p.ROWTIME))
        AND (x->ends_at IS NULL OR COALESCE(p.ts, p.ROWTIME) < x->ends_at)),
      x => x->latitude)) AS `product_latitude`,
    EXPLODE(TRANSFORM(FILTER(s.pairs, x =>
        GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399 <= x->radius_ft
        AND (x->starts_at IS NULL OR x->starts_at <= COALESCE(p.ts, p.ROWTIME))
        AND (x->ends_at IS NULL OR COALESCE(p.ts, p.ROWTIME) < x->ends_at)),
      x => x->longitude)) AS `product_longitude`,
    p.country AS `country`,
    COALESCE(p.ts, p.ROWTIME) AS `ts`
  FROM POSITIONS p
  JOIN STORE_PROMOTION_PAIRS s ON p.store_id = s.store_id
  PARTITION BY p.uid
  EMIT CHANGES;
