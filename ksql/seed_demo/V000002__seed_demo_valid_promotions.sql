-- The seed demo's VALID_PROMOTIONS: a promotion is "valid" for a product of its segment when
-- both were seen within one hour of each other (a stream-stream join: both sides are streams
-- in the demo, so ksqlDB needs a WITHIN window). Fix: an explicit GRACE PERIOD, since the
-- default (24 hours) keeps a day of records in the join's window stores.
CREATE STREAM VALID_PROMOTIONS WITH (KAFKA_TOPIC='VALID_PROMOTIONS', VALUE_FORMAT='JSON') AS
  SELECT
    pp.pid AS pid,
    sp.sku AS sku,
    sp.store_id AS store_id,
    sp.segment AS segment,
    pp.title AS title,
    pp.discount_pct AS discount_pct,
    sp.latitude AS product_latitude,
    sp.longitude AS product_longitude,
    sp.country AS country
  FROM PRODUCTS_PROMOTIONS pp
  JOIN STORES_PRODUCTS sp WITHIN 1 HOUR GRACE PERIOD 1 MINUTE ON pp.segment = sp.segment
  EMIT CHANGES;
