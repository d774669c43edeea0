"""A local ksqlDB-compatible endpoint: ksqlDB's SQL (the subset our migrations, the seed demo and
the README's analyst queries use), persistent queries on the embedded broker, and ksqlDB's REST
API. Real ksqlDB runs in the cloud; this one runs on a laptop with no account.

Modules: ``syntax`` (tokens, AST, parser), ``types`` (SQL types and key/value formats),
``functions`` (scalar, aggregate and table functions), ``expressions`` (AST -> closures),
``runners`` (persistent and transient queries on Kafka), ``engine`` (metastore and statements),
``server`` (REST API).
"""
