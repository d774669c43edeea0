-- The seed demo's sources, as the demo declared them, fixed so they work:
--   * one topic name per source, the names of the topic contract (instore/topics.py),
--   * the key columns declared (uid, store_id:sku, pid) so joins and PARTITION BY see them.
-- This set and ksql/migrations/ both define NEARBY_CUSTOMERS: apply one set per ksqlDB cluster.

CREATE STREAM CUSTOMERS_LOCATIONS (
  uid STRING KEY,
  store_id STRING,
  latitude DOUBLE,
  longitude DOUBLE,
  country STRING,
  ts BIGINT
) WITH (KAFKA_TOPIC='customers_locations', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE STREAM STORES_PRODUCTS (
  id STRING KEY,
  sku INT,
  store_id STRING,
  segment STRING,
  variant STRING,
  name STRING,
  latitude DOUBLE,
  longitude DOUBLE,
  country STRING
) WITH (KAFKA_TOPIC='stores_products', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');

CREATE STREAM PRODUCTS_PROMOTIONS (
  pid STRING KEY,
  sku INT,
  segment STRING,
  title STRING,
  discount_pct DOUBLE,
  radius_ft DOUBLE
) WITH (KAFKA_TOPIC='products_promotions', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');
