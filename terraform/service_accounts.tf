# One service account per workload, each with its own Kafka API key; what each may do is in
# acls.tf. Terraform itself uses a separate manager account (cluster admin) to create
# topics and ACLs; its key is never an output.

locals {
  workloads = {
    stream_app     = "Faust stream app (instore worker): positions -> NEARBY_CUSTOMERS -> offers"
    ksqldb         = "ksqlDB cluster identity: the ksql migrations' streams and tables"
    push_connector = "Ably Kafka Connect sink (custom connector): offers -> Ably"
    push_sink      = "Python push sink (instore push sink) when the connector is disabled"
    edge           = "Edge box producers: camera positions and kiosk interactions"
    api            = "API: promotions, catalog, consent and erasure, offer events"
    operator       = "Engineer's laptop: demo, simulators, status, ksql migrations"
  }

  # Workloads that talk to Kafka with their own API key (ksqlDB uses its credential identity).
  kafka_key_workloads = toset([for w in keys(local.workloads) : w if w != "ksqldb"])
}

resource "confluent_service_account" "workload" {
  for_each = local.workloads

  display_name = "${local.display}-${replace(each.key, "_", "-")}"
  description  = each.value
}

resource "confluent_service_account" "terraform_manager" {
  display_name = "${local.display}-terraform-manager"
  description  = "Used by Terraform only, to create the contract topics and the workload ACLs"
}

resource "confluent_role_binding" "terraform_manager_cluster_admin" {
  principal   = "User:${confluent_service_account.terraform_manager.id}"
  role_name   = "CloudClusterAdmin"
  crn_pattern = confluent_kafka_cluster.main.rbac_crn
}

resource "confluent_api_key" "terraform_manager" {
  display_name = "${local.display}-terraform-manager-kafka"
  description  = "Kafka API key Terraform uses to manage topics and ACLs"

  owner {
    id          = confluent_service_account.terraform_manager.id
    api_version = confluent_service_account.terraform_manager.api_version
    kind        = confluent_service_account.terraform_manager.kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.main.id
    api_version = confluent_kafka_cluster.main.api_version
    kind        = confluent_kafka_cluster.main.kind

    environment {
      id = confluent_environment.main.id
    }
  }

  # The key must not be used before its owner is cluster admin.
  depends_on = [confluent_role_binding.terraform_manager_cluster_admin]
}

resource "confluent_api_key" "workload_kafka" {
  for_each = local.kafka_key_workloads

  display_name = "${local.display}-${replace(each.key, "_", "-")}-kafka"
  description  = "Kafka API key of the ${each.key} workload"

  owner {
    id          = confluent_service_account.workload[each.key].id
    api_version = confluent_service_account.workload[each.key].api_version
    kind        = confluent_service_account.workload[each.key].kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.main.id
    api_version = confluent_kafka_cluster.main.api_version
    kind        = confluent_kafka_cluster.main.kind

    environment {
      id = confluent_environment.main.id
    }
  }
}
