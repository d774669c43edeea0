"""The Ably Kafka Connect sink configuration that does the sink's job in the cloud.

`instore push connect-config` prints it; Terraform (the cloud part) provisions it. The API key
is never written here: ``client.key`` is a placeholder resolved by the Connect worker from the
environment (``${env:ABLY_API_KEY}``, Kafka's EnvVarConfigProvider).
"""

from __future__ import annotations

from typing import Any

from instore import topics as t
from instore.channels import shopper_channel
from mobile_push import routing


def ably_channel_sink(
    name: str = "instore-offers-to-ably",
    tasks_max: int = 1,
    key_placeholder: str = "${env:ABLY_API_KEY}",
) -> dict[str, Any]:
    return {
        "name": name,
        "config": {
            "connector.class": "com.ably.kafka.connect.ChannelSinkConnector",
            "tasks.max": str(tasks_max),
            "topics": t.OFFERS.name,
            # One channel per shopper, from the record key (the uid); same as the sink.
            "channel": shopper_channel("#{key}"),
            "message.name": routing.MESSAGE_NAME,
            "skipOnKeyAbsence": "true",
            "client.key": key_placeholder,
            "client.id": "instore-kafka-connect",
            "client.idempotent.rest": "true",
            "client.use.binary.protocol": "false",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
            # Records that fail conversion or publishing go to dead_letters instead of stopping.
            "errors.tolerance": "all",
            "errors.deadletterqueue.topic.name": t.DEAD_LETTERS.name,
            "errors.deadletterqueue.topic.replication.factor": "3",
            "errors.deadletterqueue.context.headers.enable": "true",
            "errors.log.enable": "true",
            "errors.log.include.messages": "false",
            "config.providers": "env",
            "config.providers.env.class": (
                "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
            ),
        },
    }
