# Inputs. Secrets are `sensitive` and have no default: `instore cloud` passes them from
# CONFLUENT_CLOUD_API_KEY / CONFLUENT_CLOUD_API_SECRET / ABLY_API_KEY (environment or .env)
# in a temporary 0600 var file. Everything else has a safe default; override it in
# terraform.tfvars (see terraform.tfvars.example) or with `instore cloud ... --option`.

variable "confluent_cloud_api_key" {
  description = "Confluent Cloud resource-management API key id (Cloud API key, not a cluster key)."
  type        = string
  sensitive   = true
  nullable    = false

  validation {
    condition     = length(trimspace(var.confluent_cloud_api_key)) > 0
    error_message = "Set CONFLUENT_CLOUD_API_KEY to a Cloud resource-management API key."
  }
}

variable "confluent_cloud_api_secret" {
  description = "Secret of the Confluent Cloud resource-management API key."
  type        = string
  sensitive   = true
  nullable    = false

  validation {
    condition     = length(trimspace(var.confluent_cloud_api_secret)) > 0
    error_message = "Set CONFLUENT_CLOUD_API_SECRET to the secret of the Cloud API key."
  }
}

variable "ably_api_key" {
  description = "Ably API key (appId.keyId:secret) with publish capability on shopper:* channels; used by the Ably sink connector."
  type        = string
  sensitive   = true
  nullable    = false

  validation {
    condition     = can(regex("^[^.:\\s]+\\.[^.:\\s]+:\\S+$", var.ably_api_key))
    error_message = "ably_api_key must look like appId.keyId:secret (copy it from the Ably dashboard, API Keys tab)."
  }
}

variable "name_prefix" {
  description = "Prefix of every display name (environment, cluster, service accounts, connector); lets several deployments share one organization."
  type        = string
  default     = "instore"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name_prefix))
    error_message = "name_prefix must be 2-24 characters: lower-case letters, digits and '-', starting with a letter."
  }
}

variable "cloud" {
  description = "Cloud provider that runs the Kafka cluster, ksqlDB and the connector: AWS, GCP or AZURE."
  type        = string
  default     = "AWS"

  validation {
    condition     = contains(["AWS", "GCP", "AZURE"], var.cloud)
    error_message = "cloud must be one of AWS, GCP, AZURE."
  }
}

variable "region" {
  description = "Cloud region of the Kafka cluster, e.g. us-east-2 (AWS), us-central1 (GCP), eastus (AZURE). Custom connectors run only in some regions."
  type        = string
  default     = "us-east-2"

  validation {
    condition     = can(regex("^[a-z0-9-]{3,32}$", var.region))
    error_message = "region must be a cloud region name such as us-east-2."
  }
}

variable "kafka_cluster_type" {
  description = "Kafka cluster type: basic (cheapest, default), standard, or dedicated (needs dedicated_cku)."
  type        = string
  default     = "basic"

  validation {
    condition     = contains(["basic", "standard", "dedicated"], var.kafka_cluster_type)
    error_message = "kafka_cluster_type must be basic, standard or dedicated."
  }
}

variable "kafka_availability" {
  description = "Kafka cluster availability: SINGLE_ZONE or MULTI_ZONE (MULTI_ZONE needs standard or dedicated)."
  type        = string
  default     = "SINGLE_ZONE"

  validation {
    condition     = contains(["SINGLE_ZONE", "MULTI_ZONE"], var.kafka_availability)
    error_message = "kafka_availability must be SINGLE_ZONE or MULTI_ZONE."
  }
}

variable "dedicated_cku" {
  description = "Confluent Kafka Units for a dedicated cluster (ignored for basic and standard)."
  type        = number
  default     = 1

  validation {
    condition     = var.dedicated_cku >= 1 && floor(var.dedicated_cku) == var.dedicated_cku
    error_message = "dedicated_cku must be a whole number >= 1 (MULTI_ZONE needs >= 2)."
  }
}

variable "stream_governance_package" {
  description = "Stream Governance package of the environment (schema registry): ESSENTIALS or ADVANCED."
  type        = string
  default     = "ESSENTIALS"

  validation {
    condition     = contains(["ESSENTIALS", "ADVANCED"], var.stream_governance_package)
    error_message = "stream_governance_package must be ESSENTIALS or ADVANCED."
  }
}

variable "ksqldb_csu" {
  description = "Confluent Streaming Units of the ksqlDB cluster (1 is enough for the demo; billed per CSU-hour)."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 2, 4, 8, 12, 28], var.ksqldb_csu)
    error_message = "ksqldb_csu must be one of 1, 2, 4, 8, 12, 28."
  }
}

variable "ksqldb_topic_prefixes" {
  description = "Prefixes of extra topics the ksqlDB migrations create and own: their explicit KAFKA_TOPIC names and `instore ksql migrate`'s metadata stream/table (contract topics are granted separately)."
  type        = list(string)
  default     = ["NEARBY_", "VALID_", "MIGRATION_", "default_ksql_MIGRATION_"]

  validation {
    condition     = alltrue([for p in var.ksqldb_topic_prefixes : can(regex("^[A-Za-z0-9._-]{3,}$", p))])
    error_message = "Each ksqldb_topic_prefixes entry must be at least 3 characters of letters, digits, '.', '_' or '-'."
  }
}

variable "stream_app_id" {
  description = "Faust application id (INSTORE_APP_ID in .env): the stream app's consumer group and the prefix of its changelog topics."
  type        = string
  default     = "instore-stream"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{3,64}$", var.stream_app_id))
    error_message = "stream_app_id must be 3-64 characters of letters, digits, '.', '_' or '-'."
  }
}

variable "consumer_group_prefix" {
  description = "Prefix of the consumer groups of the API, the Python push sink and the operator's tools."
  type        = string
  default     = "instore"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{3,64}$", var.consumer_group_prefix))
    error_message = "consumer_group_prefix must be 3-64 characters of letters, digits, '.', '_' or '-'."
  }
}

variable "ably_connector_enabled" {
  description = "Run the Ably Kafka Connect sink as a Confluent Cloud custom connector (offers -> shopper:{uid}). Disable it to push with `instore push sink` instead."
  type        = bool
  default     = true
}

variable "ably_connector_plugin_path" {
  description = "Path to the Ably Kafka Connector plugin archive (.zip or .jar) from Confluent Hub or github.com/ably/kafka-connect-ably releases; needed when ably_connector_enabled."
  type        = string
  default     = ""

  validation {
    condition     = var.ably_connector_plugin_path == "" || can(regex("\\.(zip|jar)$", var.ably_connector_plugin_path))
    error_message = "ably_connector_plugin_path must point to a .zip or .jar archive."
  }
}

variable "ably_rest_endpoint" {
  description = "host:port the connector may reach (Confluent Cloud custom-connector egress allow-list)."
  type        = string
  default     = "rest.ably.io:443"

  validation {
    condition     = can(regex("^[a-z0-9.-]+:[0-9]{2,5}$", var.ably_rest_endpoint))
    error_message = "ably_rest_endpoint must be host:port, e.g. rest.ably.io:443."
  }
}

variable "ably_connector_tasks" {
  description = "tasks.max of the Ably sink connector (at most the partitions of the offers topic)."
  type        = number
  default     = 1

  validation {
    condition     = var.ably_connector_tasks >= 1 && var.ably_connector_tasks <= 16 && floor(var.ably_connector_tasks) == var.ably_connector_tasks
    error_message = "ably_connector_tasks must be a whole number between 1 and 16."
  }
}
