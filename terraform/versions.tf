terraform {
  required_version = ">= 1.5.0"

  required_providers {
    confluent = {
      source  = "confluentinc/confluent"
      version = ">= 2.30.0, < 3.0.0"
    }
  }
}

# The Cloud resource-management key comes from the caller (`instore cloud` passes it in a
# private, temporary var file); it is never written to a .tf file.
provider "confluent" {
  cloud_api_key    = var.confluent_cloud_api_key
  cloud_api_secret = var.confluent_cloud_api_secret
}
