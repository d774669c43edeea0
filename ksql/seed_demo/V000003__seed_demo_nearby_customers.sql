-- The seed demo's NEARBY_CUSTOMERS: every position is joined with every valid promotion of the
-- same country seen within 30 minutes, then filtered by distance (100 ft, with the demo's 3281
-- ft per km). This is the baseline our ksql/migrations/ version beats: it scans the whole country.
-- Fixes over the original: `uid` stays in the output (AS_VALUE, since the key moves to uid with
-- PARTITION BY) and the output topic is the contract's NEARBY_CUSTOMERS.
CREATE STREAM NEARBY_CUSTOMERS WITH (KAFKA_TOPIC='NEARBY_CUSTOMERS', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON') AS
  SELECT
    cl.uid AS uid_key,
    AS_VALUE(cl.uid) AS `uid`,
    vp.store_id AS `store_id`,
    vp.pid AS `pid`,
    vp.sku AS `sku`,
    vp.segment AS `segment`,
    GEO_DISTANCE(cl.latitude, cl.longitude, vp.product_latitude, vp.product_longitude, 'km') * 3281 AS `distance_ft`,
    cl.latitude AS `latitude`,
    cl.longitude AS `longitude`,
    vp.product_latitude AS `product_latitude`,
    vp.product_longitude AS `product_longitude`,
    cl.country AS `country`,
    COALESCE(cl.ts, cl.ROWTIME) AS `ts`
  FROM CUSTOMERS_LOCATIONS cl
  JOIN VALID_PROMOTIONS vp WITHIN 30 MINUTES GRACE PERIOD 1 MINUTE ON cl.country = vp.country
  WHERE GEO_DISTANCE(cl.latitude, cl.longitude, vp.product_latitude, vp.product_longitude, 'km') * 3281 <= 100
  PARTITION BY cl.uid
  EMIT CHANGES;
