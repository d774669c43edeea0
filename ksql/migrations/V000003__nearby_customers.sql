-- NEARBY_CUSTOMERS over the contract topic (instore/topics.py), DECLARED here and written by no
-- migration: on one stack exactly one engine writes it, chosen by the NEARBY_ENGINE setting.
--  * NEARBY_ENGINE=faust (the default): the Faust worker's proximity agent writes the topic and
--    no ksqlDB query does. ksqlDB reads it (the analyst views of V000004, push queries).
--  * NEARBY_ENGINE=ksqldb: the query in ksql/nearby_writer/nearby_customers.sql (DESIGN.md's
--    proximity rule, INSERT INTO this stream) writes it, and the worker runs without its
--    proximity agent (its policy and analytics read the topic).
-- `instore ksql migrate` applies the migrations, then starts or terminates that query to match
-- NEARBY_ENGINE (it is not a migration: a versioned file cannot follow a setting).
--
-- The columns are the contract's, in its order, with the value fields quoted in lower case as
-- both engines write them. The key is the uid. INSERT INTO requires the query's columns to be
-- these, in this order, with these types (ksqlDB's compatibleSchema).

CREATE STREAM NEARBY_CUSTOMERS (
  uid STRING KEY,
  `uid` STRING,
  `store_id` STRING,
  `pid` STRING,
  `sku` INT,
  `segment` STRING,
  `distance_ft` DOUBLE,
  `latitude` DOUBLE,
  `longitude` DOUBLE,
  `product_latitude` DOUBLE,
  `product_longitude` DOUBLE,
  `country` STRING,
  `ts` BIGINT
) WITH (KAFKA_TOPIC='NEARBY_CUSTOMERS', KEY_FORMAT='KAFKA', VALUE_FORMAT='JSON');
