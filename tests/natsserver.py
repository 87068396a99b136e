"""A real ``nats-server -js`` for the NATS output's tests, and a real JetStream consumer.

The server is the Debian package's binary (scripts/install), started on a
free port with its own store directory, stopped and started again on the same
store (a restart under traffic).  What sniffd published is read back by a
nats-py pull consumer, never by sniffd's code.

Also a command line, for a consumer that must run inside a network namespace:
``python -m tests.natsserver dump URL STREAM [SUBJECT]`` prints one JSON object
per stored message: {"seq", "msg_id", "data"}.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

# The server is up once it prints this (and JetStream with it: -js).
READY_TEXT = "Server is ready"
START_TIMEOUT_S = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NatsServer:
    """``nats-server -js -a HOST -p PORT -sd STORE``; ``prefix``: argv before it (``ip netns exec NS``)."""

    def __init__(self, store: Path, host: str = "127.0.0.1", port: int | None = None,
                 prefix: list[str] | None = None, extra: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host if not prefix else "127.0.0.1")
        self.store = store
        self.prefix = prefix or []
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.log = store.parent / f"nats-server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @staticmethod
    def available() -> str | None:
        """Why no server can be run here, or None."""
        if shutil.which("nats-server") is None:
            return "nats-server is not installed (scripts/install installs it)"
        return None

    def start(self) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        argv = [*self.prefix, "nats-server", "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store), *self.extra]
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY_TEXT not in self.log.read_text(errors="replace").split("---- restart ----")[-1]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open(self.log, "a") as f:
            f.write("\n---- restart ----\n")
        self.proc = None


async def _add_stream(url: str, name: str, subjects: list[str], **config) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=name, subjects=subjects, **config)
    finally:
        await nc.close()


def add_stream(url: str, name: str, subjects: list[str], **config) -> None:
    """A file-stored stream (the server's default); ``config``: nats-py StreamConfig fields."""
    asyncio.run(_add_stream(url, name, subjects, **config))


async def _fetch_all(url: str, stream: str, subject: str) -> list[dict]:
    """Every message in ``stream`` (on ``subject``), oldest first, by an ephemeral pull consumer."""
    import nats
    import nats.errors

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        sub = await js.pull_subscribe(subject, durable=None, stream=stream)
        out: list[dict] = []
        while len(out) < total:
            try:
                msgs = await sub.fetch(min(1000, total - len(out)), timeout=5)
            except nats.errors.TimeoutError:
                break
            for m in msgs:
                out.append({"seq": m.metadata.sequence.stream, "msg_id": (m.headers or {}).get("Nats-Msg-Id"),
                            "data": m.data.decode("utf-8")})
                await m.ack()
        return out
    finally:
        await nc.close()


def fetch_all(url: str, stream: str, subject: str) -> list[dict]:
    return asyncio.run(_fetch_all(url, stream, subject))


async def _stream_names(url: str) -> list[str]:
    import nats

    nc = await nats.connect(url)
    try:
        return list(await nc.jetstream().streams_info()) and [s.config.name for s in await nc.jetstream().streams_info()]
    finally:
        await nc.close()


def stream_names(url: str) -> list[str]:
    return asyncio.run(_stream_names(url))


def main(argv: list[str]) -> int:
    if argv[:1] == ["dump"]:
        url, stream = argv[1], argv[2]
        subject = argv[3] if len(argv) > 3 else ">"
        for m in fetch_all(url, stream, subject):
            print(json.dumps(m))
        return 0
    if argv[:1] == ["add-stream"]:
        add_stream(argv[1], argv[2], argv[3:])
        return 0
    print("usage: python -m tests.natsserver dump URL STREAM [SUBJECT] | add-stream URL NAME SUBJECT...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
