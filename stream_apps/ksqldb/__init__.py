"""A local ksqlDB-compatible endpoint: ksqlDB's SQL (the subset our migrations, the seed demo and
the README's analyst queries use), persistent queries on the embedded broker, and ksqlDB's REST
API. Real ksqlDB runs in the cloud; this one runs on a laptop with no account.

``engine.Engine`` is the way in; ``server`` serves it over HTTP. README.md in this directory
says what SQL it runs, how it maps onto ksqlDB's REST API and which module holds what.
"""
