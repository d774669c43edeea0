# ksqlDB: the second engine (ksql/ migrations), and the analysts' push and pull queries.

# ksqlDB may register schemas for the streams it creates.
resource "confluent_role_binding" "ksqldb_schema_registry" {
  principal   = "User:${confluent_service_account.workload["ksqldb"].id}"
  role_name   = "ResourceOwner"
  crn_pattern = "${data.confluent_schema_registry_cluster.main.resource_name}/subject=*"
}

resource "confluent_ksql_cluster" "main" {
  display_name = "${local.display}-ksqldb"
  csu          = var.ksqldb_csu
  # Positions are personal data: keep row contents out of the processing log.
  use_detailed_processing_log = false

  kafka_cluster {
    id = confluent_kafka_cluster.main.id
  }

  credential_identity {
    id = confluent_service_account.workload["ksqldb"].id
  }

  environment {
    id = confluent_environment.main.id
  }

  depends_on = [
    data.confluent_schema_registry_cluster.main,
    confluent_role_binding.ksqldb_schema_registry,
  ]
}

# The operator runs the migrations and the analysts' queries through the ksqlDB REST API.
resource "confluent_role_binding" "operator_ksql_admin" {
  principal   = "User:${confluent_service_account.workload["operator"].id}"
  role_name   = "KsqlAdmin"
  crn_pattern = confluent_ksql_cluster.main.resource_name
}

resource "confluent_api_key" "operator_ksqldb" {
  display_name = "${local.display}-operator-ksqldb"
  description  = "ksqlDB API key of the operator (KSQLDB_API_KEY in .env)"

  owner {
    id          = confluent_service_account.workload["operator"].id
    api_version = confluent_service_account.workload["operator"].api_version
    kind        = confluent_service_account.workload["operator"].kind
  }

  managed_resource {
    id          = confluent_ksql_cluster.main.id
    api_version = confluent_ksql_cluster.main.api_version
    kind        = confluent_ksql_cluster.main.kind

    environment {
      id = confluent_environment.main.id
    }
  }

  depends_on = [confluent_role_binding.operator_ksql_admin]
}
