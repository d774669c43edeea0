-- Which product of which store is promoted by which promotion.
--
-- Where ksqlDB's SQL forces a different shape than the Faust engine: the rule pairs products
-- with promotions many-to-many (a SKU promotion covers that SKU in every store, a segment
-- promotion every product of the segment), and ksqlDB joins tables only 1:1 on the primary
-- key or n:1 on a foreign key. So the promotions are first grouped per target (one row per
-- SKU, one per segment, each holding the list of its promotions with COLLECT_LIST), then every
-- product picks up the lists of its SKU and of its segment with two foreign-key LEFT JOINs.
-- Faust keeps the same pairs in an in-memory index instead.

-- SKU promotions, one row per SKU.
CREATE TABLE PROMOTIONS_BY_SKU AS
  SELECT
    sku,
    COLLECT_LIST(STRUCT(
      pid := pid, title := title, discount_pct := discount_pct,
      radius_ft := COALESCE(radius_ft, CAST(100 AS DOUBLE)),
      starts_at := starts_at, ends_at := ends_at)) AS promos
  FROM PROMOTIONS
  WHERE sku IS NOT NULL
  GROUP BY sku
  HAVING COUNT(*) > 0               -- a SKU whose last promotion is withdrawn leaves the table
  EMIT CHANGES;

-- Segment promotions (no SKU), one row per segment.
CREATE TABLE PROMOTIONS_BY_SEGMENT AS
  SELECT
    segment,
    COLLECT_LIST(STRUCT(
      pid := pid, title := title, discount_pct := discount_pct,
      radius_ft := COALESCE(radius_ft, CAST(100 AS DOUBLE)),
      starts_at := starts_at, ends_at := ends_at)) AS promos
  FROM PROMOTIONS
  WHERE sku IS NULL AND segment IS NOT NULL
  GROUP BY segment
  HAVING COUNT(*) > 0
  EMIT CHANGES;

-- Every product with the promotions of its SKU (foreign-key join on PROMOTIONS_BY_SKU's key).
CREATE TABLE PRODUCTS_SKU_PROMOS AS
  SELECT
    p.id AS id,
    p.store_id AS store_id,
    p.sku AS sku,
    p.segment AS segment,
    p.latitude AS latitude,
    p.longitude AS longitude,
    p.country AS country,
    s.promos AS sku_promos
  FROM PRODUCTS p
  LEFT JOIN PROMOTIONS_BY_SKU s ON p.sku = s.sku
  EMIT CHANGES;

-- ... and of its segment, only products with at least one promotion remain (a product that
-- loses its last promotion becomes a tombstone here).
CREATE TABLE PROMOTED_PRODUCTS AS
  SELECT
    p.id AS id,
    p.store_id AS store_id,
    p.sku AS sku,
    p.segment AS segment,
    p.latitude AS latitude,
    p.longitude AS longitude,
    p.country AS country,
    ARRAY_CONCAT(p.sku_promos, g.promos) AS promos
  FROM PRODUCTS_SKU_PROMOS p
  LEFT JOIN PROMOTIONS_BY_SEGMENT g ON p.segment = g.segment
  WHERE p.sku_promos IS NOT NULL OR g.promos IS NOT NULL
  EMIT CHANGES;

-- The promoted products of each store in one row keyed by store_id: a stream-table join must
-- be on the table's primary key, and positions carry store_id.
CREATE TABLE STORE_PROMOTED_PRODUCTS AS
  SELECT
    store_id,
    COLLECT_LIST(STRUCT(
      sku := sku, segment := segment, latitude := latitude, longitude := longitude,
      promos := promos)) AS products
  FROM PROMOTED_PRODUCTS
  GROUP BY store_id
  HAVING COUNT(*) > 0
  EMIT CHANGES;

-- ... flattened to one element per (product, promotion) pair, the table positions join.
-- ksqlDB has no FLATTEN: REDUCE folds each product's pairs into one array, starting from a
-- typed NULL array (ARRAY_CONCAT(NULL, a) = a). This runs when the catalog or a promotion
-- changes, not per position.
CREATE TABLE STORE_PROMOTION_PAIRS AS
  SELECT
    store_id,
    REDUCE(products,
      CAST(NULL AS ARRAY<STRUCT<pid STRING, sku INT, segment STRING, latitude DOUBLE,
                                longitude DOUBLE, radius_ft DOUBLE, starts_at BIGINT,
                                ends_at BIGINT>>),
      (acc, x) => ARRAY_CONCAT(acc, TRANSFORM(x->promos, q => STRUCT(
        pid := q->pid, sku := x->sku, segment := x->segment, latitude := x->latitude,
        longitude := x->longitude, radius_ft := q->radius_ft, starts_at := q->starts_at,
        ends_at := q->ends_at))))
    AS pairs
  FROM STORE_PROMOTED_PRODUCTS
  EMIT CHANGES;
