"""Feeders for the message-broker source kinds in the trigger e2e tests (see triggers_helpers).

Each makes the broker objects the trigger reads (so the source runs with `create` off, as an
operator's would) and removes them in `close`. `dead()` reads back what the source dead-lettered
in the broker: `[{"body": ..., "error": {...}}]`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from tests.integration.brokers import require_broker, unique

NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
ACK_WAIT_S = 3.0  # how soon JetStream redelivers what a killed server held


class NatsFeeder:
    """A stream, its durable consumer and a dead-letter stream of the test's own."""

    kind = "nats"

    def __init__(self, pg: Any) -> None:
        require_broker("NATS", 4222)
        self.stream = unique("cbe2e").replace("-", "_")
        self.subject, self.dead_subject = f"{self.stream}.in", f"{self.stream}_dead.in"
        asyncio.run(self._setup())

    async def _setup(self) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        await js.add_stream(name=self.stream, subjects=[self.subject])
        await js.add_stream(name=f"{self.stream}_DEAD", subjects=[self.dead_subject])
        consumer = ConsumerConfig(
            durable_name="runner", ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S
        )
        await js.add_consumer(self.stream, config=consumer)
        await nc.close()

    def source(self) -> dict[str, Any]:
        return {
            "kind": "nats",
            "url": NATS_URL,
            "stream": self.stream,
            "subject": self.subject,
            "durable": "runner",
            "dead_letter_subject": self.dead_subject,
        }

    def publish(self, bodies: list[dict[str, Any]]) -> None:
        async def run() -> None:
            import nats

            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            for body in bodies:
                await js.publish(self.subject, orjson.dumps(body))
            await nc.close()

        asyncio.run(run())

    def dead(self) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            import nats

            nc = await nats.connect(NATS_URL)
            sub = await nc.jetstream().pull_subscribe(
                self.dead_subject, stream=f"{self.stream}_DEAD"
            )
            try:
                msgs = await sub.fetch(10, timeout=1)
            except TimeoutError:  # nats-py's TimeoutError is one: none yet
                msgs = []
            await nc.close()
            return [_letter(m.data, m.headers or {}) for m in msgs]

        return asyncio.run(run())

    def close(self) -> None:
        async def run() -> None:
            import nats

            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            for name in (self.stream, f"{self.stream}_DEAD"):
                await js.delete_stream(name)
            await nc.close()

        asyncio.run(run())


class RabbitFeeder:
    """A durable queue and a dead-letter queue of the test's own."""

    kind = "rabbitmq"

    def __init__(self, pg: Any) -> None:
        require_broker("RabbitMQ", 5672)
        self.queue, self.dead_queue = unique("cbe2e"), unique("cbe2e-dead")
        asyncio.run(self._on_channel(self._declare))

    async def _on_channel(self, work: Any) -> Any:
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        try:
            return await work(await connection.channel(publisher_confirms=True))
        finally:
            await connection.close()

    async def _declare(self, channel: Any) -> None:
        for name in (self.queue, self.dead_queue):
            await channel.declare_queue(name, durable=True)

    def source(self) -> dict[str, Any]:
        return {
            "kind": "rabbitmq",
            "url": AMQP_URL,
            "queue": self.queue,
            "dead_letter_queue": self.dead_queue,
        }

    def publish(self, bodies: list[dict[str, Any]]) -> None:
        import aio_pika

        async def work(channel: Any) -> None:
            for body in bodies:
                message = aio_pika.Message(
                    orjson.dumps(body), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                )
                await channel.default_exchange.publish(message, routing_key=self.queue)

        asyncio.run(self._on_channel(work))

    def dead(self) -> list[dict[str, Any]]:
        async def work(channel: Any) -> list[dict[str, Any]]:
            queue = await channel.declare_queue(self.dead_queue, passive=True)
            out = []
            while (m := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
                out.append(_letter(m.body, m.headers or {}))
            return out

        return list(asyncio.run(self._on_channel(work)))

    def close(self) -> None:
        async def work(channel: Any) -> None:
            for name in (self.queue, self.dead_queue):
                await channel.queue_delete(name)

        asyncio.run(self._on_channel(work))


class MqttFeeder:
    """Topics of the test's own; a reader subscribed to the dead-letter topic from the start
    (MQTT keeps no backlog for a topic nobody subscribed to)."""

    kind = "mqtt"

    def __init__(self, pg: Any) -> None:
        import paho.mqtt.client as mqtt

        require_broker("Mosquitto", 1883)
        root = unique("cbe2e")
        self.topic, self.dead_topic = f"{root}/in", f"{root}/dead"
        self.client_id = unique("cbe2e-runner")
        self._dead: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=unique("cbe2e-feeder"), protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        self.client.subscribe(self.dead_topic, qos=1)[1]

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        props = dict(getattr(message.properties, "UserProperty", None) or [])
        with self._lock:
            self._dead.append(_letter(message.payload, props))

    def source(self) -> dict[str, Any]:
        return {
            "kind": "mqtt",
            "topic": self.topic,
            "client_id": self.client_id,
            "dead_letter_topic": self.dead_topic,
            "session_expiry_s": 300,  # the broker forgets the runner's session 5 min after
        }

    def publish(self, bodies: list[dict[str, Any]]) -> None:
        infos = [self.client.publish(self.topic, orjson.dumps(b), qos=1) for b in bodies]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published(), "Mosquitto did not acknowledge a publish"

    def dead(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._dead)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _letter(payload: bytes, headers: dict[str, Any]) -> dict[str, Any]:
    return {"body": orjson.loads(payload), "error": orjson.loads(headers["coldbrew-error"])}


BROKER_FEEDERS: dict[str, type[Any]] = {
    "nats": NatsFeeder,
    "rabbitmq": RabbitFeeder,
    "mqtt": MqttFeeder,
}
