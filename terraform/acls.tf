# Least privilege, as Kafka ACLs (they work on every cluster type, basic included).
# Topic access per workload (local.workload_access) is generated with the contract in
# contract.tf.json from instore/commands/cloud/contract.py, so no topic name is spelled here.

locals {
  cluster_operations = {
    stream_app     = ["DESCRIBE", "IDEMPOTENT_WRITE"]
    ksqldb         = ["DESCRIBE", "DESCRIBE_CONFIGS"]
    push_connector = ["DESCRIBE"]
    push_sink      = ["IDEMPOTENT_WRITE"]
    edge           = ["IDEMPOTENT_WRITE"]
    api            = ["IDEMPOTENT_WRITE"]
    operator       = ["DESCRIBE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE"]
  }

  # Consumer groups (PREFIXED). Managed Connect names its sink groups connect-<connector id>.
  group_prefixes = {
    stream_app     = [var.stream_app_id]
    push_connector = ["connect-"]
    push_sink      = [var.consumer_group_prefix]
    api            = [var.consumer_group_prefix]
    operator       = distinct([var.consumer_group_prefix, var.stream_app_id])
  }

  # Faust's own topics (table changelogs, assignor) start with the app id; the stream app
  # creates them. The operator may run a worker from the laptop, so it gets the same.
  internal_topic_operations = ["CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE"]
  internal_topic_workloads  = ["stream_app", "operator"]

  acl_rules = concat(
    flatten([for w, access in local.workload_access : [
      for topic in access.read : {
        workload = w, resource_type = "TOPIC", resource_name = topic, pattern_type = "LITERAL", operation = "READ"
      }
    ]]),
    flatten([for w, access in local.workload_access : [
      for topic in access.write : {
        workload = w, resource_type = "TOPIC", resource_name = topic, pattern_type = "LITERAL", operation = "WRITE"
      }
    ]]),
    flatten([for w, ops in local.cluster_operations : [
      for op in ops : {
        workload = w, resource_type = "CLUSTER", resource_name = "kafka-cluster", pattern_type = "LITERAL", operation = op
      }
    ]]),
    flatten([for w, prefixes in local.group_prefixes : [
      for prefix in prefixes : {
        workload = w, resource_type = "GROUP", resource_name = prefix, pattern_type = "PREFIXED", operation = "READ"
      }
    ]]),
    flatten([for w in local.internal_topic_workloads : [
      for op in local.internal_topic_operations : {
        workload = w, resource_type = "TOPIC", resource_name = var.stream_app_id, pattern_type = "PREFIXED", operation = op
      }
    ]]),
    flatten([for prefix in var.ksqldb_topic_prefixes : [
      for op in ["CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE"] : {
        workload = "ksqldb", resource_type = "TOPIC", resource_name = prefix, pattern_type = "PREFIXED", operation = op
      }
    ]]),
  )

  acls = {
    for rule in local.acl_rules :
    "${rule.workload}/${rule.resource_type}/${rule.pattern_type}/${rule.resource_name}/${rule.operation}" => rule
  }
}

resource "confluent_kafka_acl" "workload" {
  for_each = local.acls

  kafka_cluster {
    id = confluent_kafka_cluster.main.id
  }

  resource_type = each.value.resource_type
  resource_name = each.value.resource_name
  pattern_type  = each.value.pattern_type
  principal     = "User:${confluent_service_account.workload[each.value.workload].id}"
  host          = "*"
  operation     = each.value.operation
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.main.rest_endpoint

  credentials {
    key    = confluent_api_key.terraform_manager.id
    secret = confluent_api_key.terraform_manager.secret
  }

  depends_on = [confluent_kafka_topic.contract]
}

# ksqlDB's own topics, groups and transactional id are named after the cluster's topic
# prefix, known only once the cluster exists (Confluent's ksql-acls example).
locals {
  ksqldb_internal_acls = {
    "topic-prefix"        = { resource_type = "TOPIC", suffix = "", pattern_type = "PREFIXED", operation = "ALL" }
    "confluent-topic"     = { resource_type = "TOPIC", suffix = "_confluent-ksql-", pattern_type = "PREFIXED", operation = "ALL" }
    "confluent-group"     = { resource_type = "GROUP", suffix = "_confluent-ksql-", pattern_type = "PREFIXED", operation = "ALL" }
    "transactional-read"  = { resource_type = "TRANSACTIONAL_ID", suffix = "", pattern_type = "LITERAL", operation = "DESCRIBE" }
    "transactional-write" = { resource_type = "TRANSACTIONAL_ID", suffix = "", pattern_type = "LITERAL", operation = "WRITE" }
    "describe-topics"     = { resource_type = "TOPIC", suffix = null, pattern_type = "LITERAL", operation = "DESCRIBE" }
    "describe-groups"     = { resource_type = "GROUP", suffix = null, pattern_type = "LITERAL", operation = "DESCRIBE" }
  }
}

resource "confluent_kafka_acl" "ksqldb_internal" {
  for_each = local.ksqldb_internal_acls

  kafka_cluster {
    id = confluent_kafka_cluster.main.id
  }

  resource_type = each.value.resource_type
  # suffix null = every resource of that type ("*"); otherwise <suffix><topic_prefix>.
  resource_name = each.value.suffix == null ? "*" : "${each.value.suffix}${confluent_ksql_cluster.main.topic_prefix}"
  pattern_type  = each.value.pattern_type
  principal     = "User:${confluent_service_account.workload["ksqldb"].id}"
  host          = "*"
  operation     = each.value.operation
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.main.rest_endpoint

  credentials {
    key    = confluent_api_key.terraform_manager.id
    secret = confluent_api_key.terraform_manager.secret
  }
}
