# instore on Confluent Cloud: what this directory creates
# ======================================================
#
# One `terraform apply` (driven by `instore cloud up`) creates, in a new Confluent Cloud
# environment with Stream Governance (schema registry):
#   * a Kafka cluster (basic by default; `kafka_cluster_type` = standard / dedicated),
#   * every topic of the contract in instore/topics.py with its partitions, cleanup.policy
#     and retention (contract.tf.json is generated from that file: `instore cloud topics-tf`),
#   * one service account per workload with least-privilege ACLs (acls.tf) and its own
#     Kafka API key: stream_app (Faust worker), ksqldb, push_connector (Ably sink),
#     push_sink (`instore push sink`), edge (edge box producers), api, operator (the
#     engineer's laptop: demo, simulators, status, ksql migrations),
#   * a ksqlDB cluster (`ksqldb_csu`) and a ksqlDB API key for the operator,
#   * the Ably Kafka Connect sink as a custom connector reading `offers` and publishing each
#     offer to the Ably channel `shopper:{uid}` (the record key), DLQ `dead_letters`.
#
# Run it with `instore cloud plan | up | down | env` (README, "Cloud: Confluent Cloud +
# ksqlDB + Ably"). Secrets are never written to a .tf file: the Cloud API key and the Ably
# key are variables marked `sensitive` with no default, and the outputs holding keys are
# `sensitive`. The state file does hold the generated API secrets: keep terraform.tfstate
# private (it is git-ignored) or use a remote backend with encryption for a team.

locals {
  display = var.name_prefix
}

resource "confluent_environment" "main" {
  display_name = "${local.display}-env"

  stream_governance {
    package = var.stream_governance_package
  }
}

resource "confluent_kafka_cluster" "main" {
  display_name = "${local.display}-kafka"
  availability = var.kafka_availability
  cloud        = var.cloud
  region       = var.region

  dynamic "basic" {
    for_each = var.kafka_cluster_type == "basic" ? [1] : []
    content {}
  }

  dynamic "standard" {
    for_each = var.kafka_cluster_type == "standard" ? [1] : []
    content {}
  }

  dynamic "dedicated" {
    for_each = var.kafka_cluster_type == "dedicated" ? [1] : []
    content {
      cku = var.dedicated_cku
    }
  }

  environment {
    id = confluent_environment.main.id
  }

  lifecycle {
    precondition {
      condition     = !(var.kafka_cluster_type == "basic" && var.kafka_availability == "MULTI_ZONE")
      error_message = "A basic cluster is SINGLE_ZONE only: use kafka_cluster_type = \"standard\" for MULTI_ZONE."
    }
  }
}

# The schema registry of the environment (created with the Stream Governance package).
data "confluent_schema_registry_cluster" "main" {
  environment {
    id = confluent_environment.main.id
  }

  depends_on = [confluent_kafka_cluster.main]
}
