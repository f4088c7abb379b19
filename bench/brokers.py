"""Broker trigger throughput: messages per second from NATS JetStream, RabbitMQ and MQTT,
through echo jobs, into a sink of the same broker.

    python bench/brokers.py                        # 1,000 messages per broker
    python bench/brokers.py --messages 300 --only nats,mqtt

For each broker a fresh `coldbrew serve` (its own home, a free loopback port) deploys
`examples/echo`; a trigger reads the broker objects of this run's own (made and removed by the
e2e tests' feeders, `tests/e2e/broker_feeders.py`) and writes every result back to the same
broker (a JetStream stream, a queue, a topic). One warm-up message goes through first (the
worker is up); the clock runs from the first publish to the moment the sink holds every result.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.e2e.broker_feeders import AMQP_URL, BROKER_FEEDERS, NATS_URL  # noqa: E402
from triggers import serve, wait_for  # noqa: E402  (bench/triggers.py)


class NatsOut:
    def __init__(self, feeder: Any) -> None:
        self.stream = feeder.stream + "_OUT"
        self.sink = {"kind": "nats", "subject": f"{self.stream}.out", "stream": self.stream,
                     "create": True}  # fmt: skip

    def count(self) -> int:
        async def run() -> int:
            import nats
            from nats.js.errors import NotFoundError

            nc = await nats.connect(NATS_URL)
            try:
                return int((await nc.jetstream().stream_info(self.stream)).state.messages)
            except NotFoundError:
                return 0
            finally:
                await nc.close()

        return asyncio.run(run())

    def close(self) -> None:
        async def run() -> None:
            import nats

            nc = await nats.connect(NATS_URL)
            await nc.jetstream().delete_stream(self.stream)
            await nc.close()

        asyncio.run(run())


class RabbitOut:
    def __init__(self, feeder: Any) -> None:
        self.queue = feeder.queue + "-out"
        self.sink = {"kind": "rabbitmq", "routing_key": self.queue, "create": True}

    def _run(self, work: Any) -> Any:
        async def run() -> Any:
            import aio_pika

            connection = await aio_pika.connect(AMQP_URL)
            try:
                return await work(await connection.channel())
            finally:
                await connection.close()

        return asyncio.run(run())

    def count(self) -> int:
        async def work(channel: Any) -> int:
            from aiormq.exceptions import ChannelNotFoundEntity

            try:
                queue = await channel.declare_queue(self.queue, passive=True)
            except ChannelNotFoundEntity:
                return 0
            return int(queue.declaration_result.message_count)

        return int(self._run(work))

    def close(self) -> None:
        self._run(lambda channel: channel.queue_delete(self.queue))


class MqttOut:
    def __init__(self, feeder: Any) -> None:
        import paho.mqtt.client as mqtt

        self.topic = feeder.topic.replace("/in", "/out")
        self.sink = {"kind": "mqtt", "topic": self.topic}
        self.seen = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        self.client.subscribe(self.topic, qos=1)

    def _on_message(self, *args: Any) -> None:
        with self._lock:
            self.seen += 1

    def count(self) -> int:
        with self._lock:
            return self.seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


OUTS = {"nats": NatsOut, "rabbitmq": RabbitOut, "mqtt": MqttOut}


def one(kind: str, n: int) -> dict[str, Any]:
    feeder = BROKER_FEEDERS[kind](None)
    out = OUTS[kind](feeder)
    with tempfile.TemporaryDirectory() as tmp:
        process, url = serve(Path(tmp) / "home", ROOT / "examples" / "echo")
        log: list[str] = []  # read on: a full pipe would stall the server's logging
        threading.Thread(target=lambda: log.extend(process.stdout or ()), daemon=True).start()
        try:
            key = (Path(tmp) / "home" / "admin.key").read_text().strip()
            created = httpx.post(
                f"{url}/v1/triggers",
                headers={"Authorization": f"Bearer {key}"},
                json={"name": "bench", "source": feeder.source(), "endpoint": "echo",
                      "sink": out.sink, "batch_size": 20, "max_in_flight": 400},
                timeout=60,
            )  # fmt: skip
            created.raise_for_status()
            time.sleep(1.0)  # the runner opens the source (an MQTT session starts then)
            feeder.publish([{"i": -1}])  # warm-up: the worker starts
            try:
                wait_for(lambda: out.count() >= 1, 120, f"{kind}: the warm-up result")
            except SystemExit:
                print("".join(log[-40:]), file=sys.stderr)
                raise
            start = time.perf_counter()
            feeder.publish([{"i": i} for i in range(n)])
            published = time.perf_counter() - start
            wait_for(lambda: out.count() >= n + 1, 600, f"{kind}: {n} results")
            seconds = time.perf_counter() - start
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            out.close()
            feeder.close()
    return {"broker": kind, "messages": n, "publish_s": round(published, 3),
            "seconds": round(seconds, 3), "per_s": round(n / seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--only", default="nats,rabbitmq,mqtt")
    args = parser.parse_args()
    rows = [one(kind, args.messages) for kind in args.only.split(",")]
    print(f"{'broker':<10}{'messages':>9}{'publish s':>11}{'total s':>9}{'msg/s':>9}")
    for r in rows:
        print(
            f"{r['broker']:<10}{r['messages']:>9}{r['publish_s']:>11}{r['seconds']:>9}"
            f"{r['per_s']:>9}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
