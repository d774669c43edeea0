# The Ably Kafka Connect sink as a Confluent Cloud custom connector: it reads `offers`
# (key = uid) and publishes each record to the Ably channel shopper:<key>. A record whose
# channel cannot be mapped goes to the dead-letter topic with the error in its headers.
# Topic names come from local.push_connector (contract.tf.json, generated from
# instore/topics.py).

resource "confluent_custom_connector_plugin" "ably" {
  count = var.ably_connector_enabled ? 1 : 0

  display_name                = "${local.display}-ably-kafka-connector"
  description                 = "Ably Kafka Connector (com.ably.kafka.connect.ChannelSinkConnector)"
  documentation_link          = "https://github.com/ably/kafka-connect-ably"
  connector_class             = "com.ably.kafka.connect.ChannelSinkConnector"
  connector_type              = "SINK"
  cloud                       = var.cloud
  sensitive_config_properties = ["client.key", "client.proxy.password"]
  filename                    = var.ably_connector_plugin_path

  lifecycle {
    precondition {
      condition     = var.ably_connector_plugin_path != "" && fileexists(var.ably_connector_plugin_path)
      error_message = "Download the Ably Kafka Connector .zip (Confluent Hub ably/kafka-connect-ably or its GitHub releases) and set ably_connector_plugin_path, or set ably_connector_enabled = false."
    }
  }
}

resource "confluent_connector" "ably_sink" {
  count = var.ably_connector_enabled ? 1 : 0

  environment {
    id = confluent_environment.main.id
  }

  kafka_cluster {
    id = confluent_kafka_cluster.main.id
  }

  config_sensitive = {
    "kafka.api.key"    = confluent_api_key.workload_kafka["push_connector"].id
    "kafka.api.secret" = confluent_api_key.workload_kafka["push_connector"].secret
    "client.key"       = var.ably_api_key
  }

  config_nonsensitive = {
    "confluent.connector.type"                      = "CUSTOM"
    "confluent.custom.plugin.id"                    = confluent_custom_connector_plugin.ably[0].id
    "confluent.custom.connection.endpoints"         = "${var.ably_rest_endpoint}:TCP"
    "connector.class"                               = confluent_custom_connector_plugin.ably[0].connector_class
    "name"                                          = "${local.display}-ably-sink"
    "kafka.auth.mode"                               = "KAFKA_API_KEY"
    "tasks.max"                                     = tostring(var.ably_connector_tasks)
    "topics"                                        = local.push_connector.source_topic
    "channel"                                       = "shopper:#{key}" # DESIGN.md, Push: one channel per shopper
    "message.name"                                  = "offer"
    "client.id"                                     = "${local.display}-ably-sink"
    "key.converter"                                 = "org.apache.kafka.connect.storage.StringConverter"
    "value.converter"                               = "org.apache.kafka.connect.storage.StringConverter"
    "onFailedRecordMapping"                         = "dlq"
    "errors.tolerance"                              = "all"
    "errors.deadletterqueue.topic.name"             = local.push_connector.dead_letter_topic
    "errors.deadletterqueue.context.headers.enable" = "true"
  }

  depends_on = [confluent_kafka_acl.workload]
}
