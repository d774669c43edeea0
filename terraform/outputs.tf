# What `instore cloud env` turns into .env. Outputs that hold a key or secret are
# `sensitive`: `terraform output` masks them and only `terraform output -json` shows them.

output "environment_id" {
  description = "Confluent Cloud environment id."
  value       = confluent_environment.main.id
}

output "kafka_cluster_id" {
  description = "Kafka cluster id (lkc-...)."
  value       = confluent_kafka_cluster.main.id
}

output "kafka_bootstrap_servers" {
  description = "host:port for KAFKA_BOOTSTRAP_SERVERS (SASL_SSL, PLAIN)."
  value       = replace(confluent_kafka_cluster.main.bootstrap_endpoint, "SASL_SSL://", "")
}

output "kafka_rest_endpoint" {
  description = "Kafka REST endpoint of the cluster."
  value       = confluent_kafka_cluster.main.rest_endpoint
}

output "kafka_partitions" {
  description = "Partitions of the contract topics that have no explicit count (KAFKA_PARTITIONS)."
  value       = local.default_partitions
}

output "kafka_replication_factor" {
  description = "Replication factor Confluent Cloud uses (KAFKA_REPLICATION_FACTOR for topics the apps create)."
  value       = 3
}

output "stream_app_id" {
  description = "Faust application id the ACLs are written for (INSTORE_APP_ID)."
  value       = var.stream_app_id
}

output "service_account_ids" {
  description = "Service account id of each workload."
  value       = { for w, sa in confluent_service_account.workload : w => sa.id }
}

output "kafka_api_keys" {
  description = "Kafka API key and secret of each workload that connects with its own key."
  value = {
    for w, key in confluent_api_key.workload_kafka : w => {
      key    = key.id
      secret = key.secret
    }
  }
  sensitive = true
}

output "ksqldb_cluster_id" {
  description = "ksqlDB cluster id (lksqlc-...)."
  value       = confluent_ksql_cluster.main.id
}

output "ksqldb_endpoint" {
  description = "ksqlDB REST endpoint (KSQLDB_URL)."
  value       = confluent_ksql_cluster.main.rest_endpoint
}

output "ksqldb_api_key" {
  description = "ksqlDB API key and secret of the operator (KSQLDB_API_KEY / KSQLDB_API_SECRET)."
  value = {
    key    = confluent_api_key.operator_ksqldb.id
    secret = confluent_api_key.operator_ksqldb.secret
  }
  sensitive = true
}

output "schema_registry_id" {
  description = "Schema registry cluster id (lsrc-...)."
  value       = data.confluent_schema_registry_cluster.main.id
}

output "schema_registry_url" {
  description = "Schema registry REST endpoint."
  value       = data.confluent_schema_registry_cluster.main.rest_endpoint
}

output "ably_connector_id" {
  description = "Id of the Ably sink connector, or null when ably_connector_enabled = false."
  value       = var.ably_connector_enabled ? confluent_connector.ably_sink[0].id : null
}
