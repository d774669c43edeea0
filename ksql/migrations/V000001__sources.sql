-- Our sources over the topic contract (instore/topics.py). Products, promotions and consents
-- are TABLEs over their compacted topics (a tombstone deletes the row: a withdrawn promotion
-- or an erased shopper), positions are a STREAM.
-- The topics exist already (`instore up`, the API or Terraform create the contract's topics
-- with the cluster's partition count), so no PARTITIONS here: ksqlDB would refuse a mismatch.
-- Event time: the contract sets the Kafka record timestamp to `ts`, so ROWTIME is the event
-- time, the rule still reads COALESCE(ts, ROWTIME) so a record without ts keeps working.

CREATE TABLE PRODUCTS (
  id STRING PRIMARY KEY,            -- 'store_id:sku', the topic's key
  sku INT,
  store_id STRING,
  segment STRING,
  variant STRING,
  name STRING,
  latitude DOUBLE,
  longitude DOUBLE,
  country STRING
) WITH (KAFKA_TOPIC='stores_products', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE TABLE PROMOTIONS (
  pid STRING PRIMARY KEY,
  sku INT,                          -- null: the promotion targets a whole segment
  segment STRING,
  title STRING,
  discount_pct DOUBLE,
  radius_ft DOUBLE,                 -- null means the contract's default, 100 ft
  starts_at BIGINT,                 -- null: open start
  ends_at BIGINT                    -- null: open end
) WITH (KAFKA_TOPIC='products_promotions', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE TABLE CONSENTS (
  uid STRING PRIMARY KEY,
  opted_in BOOLEAN,
  channels ARRAY<STRING>,
  updated_at BIGINT
) WITH (KAFKA_TOPIC='shopper_consents', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE STREAM POSITIONS (
  uid STRING KEY,
  store_id STRING,
  latitude DOUBLE,
  longitude DOUBLE,
  country STRING,
  ts BIGINT,
  source STRING,
  accuracy_m DOUBLE
) WITH (KAFKA_TOPIC='customers_locations', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE STREAM KIOSK_INTERACTIONS (
  id STRING KEY,                    -- 'store_id:kiosk_id'
  store_id STRING,
  kiosk_id STRING,
  uid STRING,
  action STRING,
  sku INT,
  ts BIGINT
) WITH (KAFKA_TOPIC='kiosk_interactions', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');
