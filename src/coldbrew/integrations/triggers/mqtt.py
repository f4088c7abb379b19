"""MQTT 5 (Mosquitto and others) as a trigger source and a sink.

Source: one persistent session (fixed `client_id`, clean start off, a session expiry), one QoS 1
subscription to `topic`. The broker keeps the session while the runner is away, so messages
published while coldbrew is down are delivered when it reconnects.

How at-least-once holds although MQTT has no "ack later" in its protocol: a QoS 1 delivery is
in flight until the client sends PUBACK, and a broker re-sends in-flight messages (DUP set) when
the session reconnects. paho-mqtt normally sends PUBACK as soon as its callback returns; here it
runs with `manual_ack`, and PUBACK goes out from `ack()`, which the runner calls only once the
job is durably accepted. A crash before that leaves the message in flight in the broker's
session and it comes again on reconnect. A crash after the job was accepted but before PUBACK
left redelivers it too, and the runner's idempotency key (the message key) makes that no new
job. A broker caps messages in flight per client (Mosquitto `max_inflight_messages`, 20 by
default; `receive_maximum` here asks for at most that many), so a fetch returns at most that
many, and nothing more arrives until they are acked.

The message key: MQTT has no message id that outlives a delivery (the packet id is reused), so
it is the publisher's `message-id` user property when set (`<topic>|id:<value>`), else a hash
of the payload (`<topic>|sha256:<hex>`): a redelivery keeps both, and two publishes of the same
payload to one topic are one message to coldbrew unless the publisher sets `message-id`.

Dead letters (long after the ack, from the runner's copy) are published (QoS 1, PUBACK awaited)
to `dead_letter_topic`: the message's JSON input, the error in user properties.

aiomqtt (over paho-mqtt 2) is imported in `open()` only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from coldbrew.errors import ServerError
from coldbrew.integrations.triggers import brokerwire
from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    SinkRecord,
    TriggerContext,
    body_key,
    decode_body,
    register_sink,
    register_source,
)

if TYPE_CHECKING:
    import aiomqtt
    from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)
NEVER_EXPIRE = 0xFFFFFFFF  # MQTT 5: a session expiry of 2^32-1 means the session never expires


class MqttSourceConfig(KindConfig):
    """A QoS 1 subscription in a persistent MQTT 5 session."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    topic: str = Field(min_length=1, description="topic filter (+ and # allowed)")
    client_id: str = Field(
        min_length=1, max_length=128, description="fixed: the broker keeps the session under it"
    )
    session_expiry_s: int = Field(
        default=NEVER_EXPIRE,
        ge=1,
        le=NEVER_EXPIRE,
        description="how long the broker keeps "
        "the session (and queues messages) while the runner is disconnected",
    )
    receive_maximum: int = Field(default=20, ge=1, le=65535)
    id_property: str = Field(default="message-id", min_length=1)
    dead_letter_topic: str | None = Field(default=None, min_length=1, pattern=r"^[^\s#+]+$")
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MqttSourceConfig:
        brokerwire.require_client("mqtt", "aiomqtt", "aiomqtt")
        check_filter(self.topic)
        if self.dead_letter_topic is not None and topic_matches(self.topic, self.dead_letter_topic):
            raise ValueError(
                f"dead_letter_topic {self.dead_letter_topic!r} matches topic {self.topic!r}: "
                "dead letters would be read again as new messages; choose a topic outside it"
            )
        return self


class MqttSinkConfig(KindConfig):
    """Publish each result as JSON (QoS 1) to a topic."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    topic: str = Field(min_length=1, pattern=r"^[^\s#+]+$")
    client_id: str | None = Field(default=None, max_length=128)
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MqttSinkConfig:
        brokerwire.require_client("mqtt", "aiomqtt", "aiomqtt")
        return self


def check_filter(topic_filter: str) -> None:
    """MQTT's filter rules: `+` is a whole level, `#` a whole level and the last one."""
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("+" in level or "#" in level) and len(level) > 1:
            raise ValueError(
                f"topic {topic_filter!r}: a wildcard must be a whole level ({level!r})"
            )
        if level == "#" and i != len(levels) - 1:
            raise ValueError(f"topic {topic_filter!r}: '#' must be the last level")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` falls under `topic_filter` (`+` one level, `#` the rest)."""
    parts, levels = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)


def user_properties(props: Properties | None) -> dict[str, str]:
    """A message's MQTT 5 user properties (name → last value)."""
    pairs = getattr(props, "UserProperty", None) or []
    return {str(name): str(value) for name, value in pairs}


def message_key(topic: str, payload: bytes, props: Properties | None, id_property: str) -> str:
    """`<topic>|id:<message-id>` when the publisher set one, else `<topic>|sha256:<hash>`."""
    msg_id = user_properties(props).get(id_property)
    return f"{topic}|id:{msg_id}" if msg_id else f"{topic}|{body_key(payload)}"


def publish_properties(fields: dict[str, str]) -> Properties:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = list(fields.items())
    return props


def _client(
    host: str,
    port: int,
    *,
    client_id: str | None,
    username: str | None,
    password: str | None,
    timeout_s: float,
    persistent: Properties | None = None,
) -> aiomqtt.Client:
    import aiomqtt

    return aiomqtt.Client(
        host,
        port,
        identifier=client_id,
        username=username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=persistent is None,  # False: resume the broker's session for client_id
        properties=persistent,
        timeout=timeout_s,
    )


async def _connect(client: aiomqtt.Client, host: str, port: int) -> None:
    try:
        await client.__aenter__()
    except Exception as exc:
        raise brokerwire.unreachable("mqtt", f"mqtt://{host}:{port}", exc) from exc


@dataclass(frozen=True)
class _Delivery:
    """A message's handle: which connection got it, for its PUBACK."""

    connection: int
    message: aiomqtt.Message


class MqttSource:
    """One persistent-session QoS 1 subscriber; see the module docstring for the guarantees."""

    def __init__(self, config: MqttSourceConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self._client: aiomqtt.Client | None = None
        self._connection = 0  # counts connects: a PUBACK goes only on the one that delivered
        self._broken = False

    async def open(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cfg = self.config
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = cfg.session_expiry_s
        session.ReceiveMaximum = cfg.receive_maximum
        client = _client(
            cfg.host,
            cfg.port,
            client_id=cfg.client_id,
            username=cfg.username,
            password=cfg.password,
            timeout_s=cfg.connect_timeout_s,
            persistent=session,
        )
        # aiomqtt does not expose paho's manual acks; its paho client is `_client` (aiomqtt 2.x).
        # Set before connecting, so not even a message re-sent at connect is acked on receipt.
        client._client.manual_ack_set(True)
        await _connect(client, cfg.host, cfg.port)
        self._client, self._broken = client, False
        self._connection += 1
        try:
            await client.subscribe(cfg.topic, qos=1)
        except BaseException:
            await self.close()
            raise

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Waits (through the clock) for the first delivery, then takes what else has arrived.
        After a lost connection it reconnects first: the session resends what was in flight."""
        import aiomqtt

        if self._client is None or self._broken:
            await self.close()
            await self.open()
        client = self._client
        assert client is not None
        messages = client.messages
        got: list[aiomqtt.Message] = []
        try:
            if len(messages) == 0:
                try:
                    got.append(await self.ctx.clock.wait_for(anext(messages), wait_s))
                except TimeoutError:
                    return []
            while len(got) < max_messages and len(messages) > 0:
                got.append(await anext(messages))
        except aiomqtt.MqttError as exc:
            self._broken = True  # what `got` holds comes again on the next connection
            raise ServerError(
                f"mqtt: lost the connection to {self.config.host}:{self.config.port}: {exc}",
                hint="the next fetch reconnects; in-flight messages come again then",
            ) from exc
        now = self.ctx.clock.time()
        return [
            Message(
                key=message_key(
                    m.topic.value, bytes(m.payload), m.properties, self.config.id_property
                ),
                body=decode_body(bytes(m.payload)),
                received_at=now,
                handle=_Delivery(self._connection, m),
            )
            for m in got
        ]

    async def ack(self, messages: Sequence[Message]) -> None:
        """PUBACK each message now: the broker forgets it. A PUBACK lost with the connection
        means a redelivery, which the message key turns into no new job.

        A message that came on an earlier connection gets no PUBACK here: the broker resent it
        on reconnect, maybe under the same packet id as a newer message, so acking the old
        handle could ack the wrong one; its resent copy is acked when it comes.
        """
        assert self._client is not None
        paho = self._client._client
        for message in messages:
            delivery: _Delivery = message.handle
            m = delivery.message
            if delivery.connection == self._connection and m.qos > 0:
                paho.ack(m.mid, m.qos)

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        """Publish the message's input (QoS 1, PUBACK awaited) with the error in user
        properties; `message-id` = the key, so a reader can drop a repeated dead letter."""
        topic = self.config.dead_letter_topic
        if topic is None:
            return  # the runner's own dead-letter table has it
        assert self._client is not None, "open() first"
        fields = brokerwire.error_fields(self.ctx.trigger_id, message.key, error)
        fields["coldbrew-source-topic"] = self.config.topic
        fields[self.config.id_property] = message.key
        payload = brokerwire.dead_letter_payload(message)
        await self._client.publish(topic, payload, qos=1, properties=publish_properties(fields))

    async def lag(self) -> int | None:
        return None  # MQTT does not tell a subscriber how much its session has queued

    async def close(self) -> None:
        """Disconnect cleanly; the broker keeps the session and what is still in flight."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except Exception as exc:  # gone already: the session stays on the broker anyway
                log.debug("mqtt: disconnect failed: %s", exc)


class MqttSink:
    """Publishes each finished job's record as JSON (QoS 1) on one topic."""

    def __init__(self, config: MqttSinkConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self._client: aiomqtt.Client | None = None
        self._broken = False

    async def open(self) -> None:
        cfg = self.config
        client = _client(
            cfg.host,
            cfg.port,
            client_id=cfg.client_id,
            username=cfg.username,
            password=cfg.password,
            timeout_s=cfg.connect_timeout_s,
        )
        await _connect(client, cfg.host, cfg.port)
        self._client, self._broken = client, False

    async def write(self, records: Sequence[SinkRecord]) -> None:
        """One QoS 1 publish per record, each awaited (PUBACK): the records are with the broker
        when this returns. The `message-id` property lets a reader drop a repeated write."""
        import aiomqtt

        if self._client is None or self._broken:  # the runner retries write, never reopens
            await self.close()
            await self.open()
        assert self._client is not None
        try:
            for record in records:
                props = publish_properties({"message-id": brokerwire.record_id(record)})
                await self._client.publish(
                    self.config.topic, brokerwire.record_json(record), qos=1, properties=props
                )
        except aiomqtt.MqttError:
            self._broken = True
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except Exception as exc:
                log.debug("mqtt: disconnect failed: %s", exc)


register_source(
    Kind(
        name="mqtt",
        config=MqttSourceConfig,
        build=MqttSource,
        summary="a QoS 1 subscription in a persistent MQTT 5 session: host, port, topic, "
        "client_id, session_expiry_s, dead_letter_topic",
    )
)
register_sink(
    Kind(
        name="mqtt",
        config=MqttSinkConfig,
        build=MqttSink,
        summary="publish results as JSON (QoS 1): host, port, topic",
    )
)
