-- Analyst views over NEARBY_CUSTOMERS and the kiosks (the README's analyst queries read these).

-- Near-matches per promotion per hour (tumbling windows on event time): the funnel's top.
CREATE TABLE NEARBY_PER_PROMOTION_HOURLY AS
  SELECT
    `pid` AS pid,
    COUNT(*) AS nearby,
    COUNT_DISTINCT(`uid`) AS shoppers,
    MIN(`distance_ft`) AS closest_ft,
    AVG(`distance_ft`) AS avg_distance_ft
  FROM NEARBY_CUSTOMERS
  WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES)
  GROUP BY `pid`
  EMIT CHANGES;

-- Offers sent per promotion per hour, from the policy's `offers` topic.
CREATE STREAM OFFERS (
  uid STRING KEY,
  offer_id STRING,
  store_id STRING,
  pid STRING,
  sku INT,
  title STRING,
  discount_pct DOUBLE,
  distance_ft DOUBLE,
  ts BIGINT,
  expires_at BIGINT
) WITH (KAFKA_TOPIC='offers', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE TABLE OFFERS_PER_PROMOTION_HOURLY AS
  SELECT
    pid,
    LATEST_BY_OFFSET(title) AS title,
    COUNT(*) AS offers,
    COUNT_DISTINCT(uid) AS shoppers
  FROM OFFERS
  WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES)
  GROUP BY pid
  EMIT CHANGES;

-- Dwell per product: how long shoppers stood near each product (positions arrive at ~2 Hz, so
-- a near-row is ~0.5 s of dwell). Top products by dwell = ORDER the pull query's rows.
CREATE TABLE PRODUCT_DWELL AS
  SELECT
    CAST(`store_id` AS STRING) + ':' + CAST(`sku` AS STRING) AS product_id,
    LATEST_BY_OFFSET(`store_id`) AS store_id,
    LATEST_BY_OFFSET(`sku`) AS sku,
    COUNT(*) AS near_rows,
    COUNT(*) * 0.5 AS dwell_s,
    COUNT_DISTINCT(`uid`) AS shoppers
  FROM NEARBY_CUSTOMERS
  GROUP BY CAST(`store_id` AS STRING) + ':' + CAST(`sku` AS STRING)
  EMIT CHANGES;

-- Kiosk activity per store and action over 15-minute hopping windows.
CREATE TABLE KIOSK_ACTIVITY WITH (KEY_FORMAT='JSON') AS
  SELECT
    store_id,
    action,
    COUNT(*) AS events
  FROM KIOSK_INTERACTIONS
  WINDOW HOPPING (SIZE 15 MINUTES, ADVANCE BY 5 MINUTES)
  GROUP BY store_id, action
  EMIT CHANGES;
