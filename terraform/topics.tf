# Every topic of the contract, from local.contract_topics in contract.tf.json, which
# `instore cloud topics-tf` generates from instore/topics.py (tests fail when it is stale).
resource "confluent_kafka_topic" "contract" {
  for_each = local.contract_topics

  kafka_cluster {
    id = confluent_kafka_cluster.main.id
  }

  topic_name       = each.key
  partitions_count = each.value.partitions
  config           = each.value.config
  rest_endpoint    = confluent_kafka_cluster.main.rest_endpoint

  credentials {
    key    = confluent_api_key.terraform_manager.id
    secret = confluent_api_key.terraform_manager.secret
  }

}
