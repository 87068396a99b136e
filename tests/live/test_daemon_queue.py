"""The capture thread's bounded queue: when it is full, frames are dropped and counted.

The real capture loop of sniffd.live on a real LiveCapture of loopback
traffic, with no processing loop taking from the queue (the worst burst:
processing stalled).  Memory must stay at the queue's bound and every frame
the kernel handed over must be either queued or counted as a queue drop.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest

from sniffd import config as configmod
from sniffd.capture import Batch, CaptureError, LiveCapture
from sniffd.live import _STOP, LiveRunner, Signals, Tick

pytestmark = pytest.mark.live

DATAGRAMS = 200


def test_full_queue_drops_frames_and_counts_them():
    if os.geteuid() != 0:
        pytest.skip("capturing on lo needs root or CAP_NET_RAW")
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    cfg = configmod.defaults()
    cfg.capture.update(interface="lo", bpf_filter=f"udp dst port {port}", queue_batches=2, batch_size=1, read_timeout_ms=50)
    try:
        capture = LiveCapture("lo", bpf=cfg.capture["bpf_filter"], read_timeout_ms=50, buffer_bytes=4 * 1024 * 1024)
    except CaptureError as exc:
        pytest.skip(f"cannot capture on lo: {exc}")
    # Only the capture thread runs: no pipeline, sink or report is used.
    runner = LiveRunner(cfg.capture, capture, pipeline=None, sink=None, report=None, signals=Signals())  # type: ignore[arg-type]
    thread = threading.Thread(target=runner._capture_loop, daemon=True)
    thread.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(DATAGRAMS):
        sender.sendto(b"x%d" % i, ("127.0.0.1", port))

    def queued_frames() -> int:
        return sum(len(item) for item in list(runner.queue.queue) if type(item) is Batch)

    deadline = time.monotonic() + 5
    while runner.queue_drops + queued_frames() < DATAGRAMS and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runner.queue.qsize() <= 2
    in_queue = queued_frames()
    assert DATAGRAMS == runner.queue_drops + in_queue
    assert runner.queue_drops >= DATAGRAMS - 2

    runner.stop_requested.set()
    items = []
    while True:
        item = runner.queue.get(timeout=5)
        if item is _STOP:
            break
        items.append(item)
    thread.join(5)
    assert not thread.is_alive()
    capture.close()
    assert all(type(item) in (Batch, Tick) for item in items)
    sender.close()
    receiver.close()
    with pytest.raises(queue.Empty):
        runner.queue.get_nowait()
