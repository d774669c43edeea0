-- NEARBY_CUSTOMERS, DESIGN.md's proximity rule: a position of shopper uid in store s at time t
-- is near product p for promotion q when p is in s, q targets p's SKU (or, without a SKU, its
-- segment), q.starts_at <= t < q.ends_at (open ends allowed) and
-- GEO_DISTANCE(position, p, 'km') * 3280.8399 <= q.radius_ft.
--
-- Where ksqlDB's SQL forces a different shape than the Faust engine:
--  * positions join STORE_PROMOTED_PRODUCTS on store_id (a stream-table join must use the
--    table's primary key), so one joined row holds every promoted product of the store;
--  * a WHERE clause runs before a table function (EXPLODE), so the per-element conditions are
--    written as FILTER lambdas inside the EXPLODE, and the pair (product, promotion) needs two
--    steps: NEARBY_PRODUCTS (one row per product within its largest radius), then
--    NEARBY_CUSTOMERS (one row per promotion of that product that is active and within radius);
--  * a position without store_id joins nothing (ksqlDB has no geofence lookup; the Faust
--    engine places it by geofence);
--  * the output columns are quoted in lower case so the topic carries the contract's fields,
--    and AS_VALUE keeps uid in the value once PARTITION BY moves it into the key.
-- The local endpoint evaluates the first FILTER with a per-store grid index (a physical plan
-- choice; the result is the one the SQL defines).

CREATE STREAM NEARBY_PRODUCTS WITH (KAFKA_TOPIC='NEARBY_PRODUCTS', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON') AS
  SELECT
    p.uid AS uid,
    s.store_id AS store_id,
    p.latitude AS latitude,
    p.longitude AS longitude,
    p.country AS country,
    COALESCE(p.ts, p.ROWTIME) AS ts,
    EXPLODE(FILTER(s.products, x =>
      GEO_DISTANCE(p.latitude, p.longitude, x->latitude, x->longitude, 'km') * 3280.8399
        <= x->max_radius_ft)) AS product
  FROM POSITIONS p
  JOIN STORE_PROMOTED_PRODUCTS s ON p.store_id = s.store_id
  PARTITION BY p.uid
  EMIT CHANGES;

CREATE STREAM NEARBY_CUSTOMERS WITH (KAFKA_TOPIC='NEARBY_CUSTOMERS', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON') AS
  SELECT
    uid,
    AS_VALUE(uid) AS `uid`,
    store_id AS `store_id`,
    EXPLODE(TRANSFORM(FILTER(product->promos, q =>
        (q->starts_at IS NULL OR q->starts_at <= ts)
        AND (q->ends_at IS NULL OR ts < q->ends_at)
        AND GEO_DISTANCE(latitude, longitude, product->latitude, product->longitude, 'km') * 3280.8399
              <= q->radius_ft),
      q => q->pid)) AS `pid`,
    product->sku AS `sku`,
    product->segment AS `segment`,
    GEO_DISTANCE(latitude, longitude, product->latitude, product->longitude, 'km') * 3280.8399 AS `distance_ft`,
    latitude AS `latitude`,
    longitude AS `longitude`,
    product->latitude AS `product_latitude`,
    product->longitude AS `product_longitude`,
    country AS `country`,
    ts AS `ts`
  FROM NEARBY_PRODUCTS
  EMIT CHANGES;
