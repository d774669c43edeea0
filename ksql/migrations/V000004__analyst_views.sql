-- Analyst views over NEARBY_CUSTOMERS and the kiosks (docs/ksqldb.md's analyst queries read these).

-- Near-matches per promotion per hour (tumbling windows on event time): the funnel's top. One
-- engine writes NEARBY_CUSTOMERS (V000003), so each row, one shopper position near the
-- promotion, is counted once.
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

-- Dwell per product, the dashboard's definition (stream_apps/analytics.py DwellTracker, which
-- the Faust worker runs): for one shopper at one product (store_id:sku), the time between
-- consecutive NEARBY rows at most DWELL_GAP_S (default 5 s) apart, a product near several
-- promotions counted once per moment.
-- One SESSION window per (store_id, sku, uid) whose inactivity gap is that gap: a session is a
-- run of the shopper's rows at the product with no pause longer than 5 s, and its dwell is
-- WINDOWEND - WINDOWSTART (its last row's time minus its first), which is the sum of the gaps
-- between its consecutive rows, the sum DwellTracker adds up. Rows of one moment (the product's
-- other promotions, a replayed row) fall inside their session and add nothing, and a pause over
-- 5 s starts a new session instead of adding the pause. Window bounds are record times: both
-- writers stamp a row with its `ts` (the contract). The gap is written here: keep 5 SECONDS
-- equal to DWELL_GAP_S.
-- A product's dashboard total is the SUM of DWELL_S over its sessions: a pull query returns the
-- sessions (`instore ksql query "SELECT PRODUCT_ID, DWELL_S FROM PRODUCT_DWELL WHERE
-- STORE_ID = 'store-001'"`), added up per PRODUCT_ID, or per PRODUCT_ID and UID for a shopper.
-- Over a time range, take the sessions whose WINDOWEND falls in it: the dashboard files each gap
-- under the minute of its later row, so only a session straddling the range's start is counted
-- whole here and in part there. NEAR_ROWS counts the session's rows, one per promotion near.
CREATE TABLE PRODUCT_DWELL WITH (KEY_FORMAT='JSON') AS
  SELECT
    `store_id` AS store_id,
    `sku` AS sku,
    `uid` AS uid,
    `store_id` + ':' + CAST(`sku` AS STRING) AS product_id,
    COUNT(*) AS near_rows,
    CAST(WINDOWEND - WINDOWSTART AS DOUBLE) / 1000 AS dwell_s
  FROM NEARBY_CUSTOMERS
  WINDOW SESSION (5 SECONDS)
  GROUP BY `store_id`, `sku`, `uid`
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
