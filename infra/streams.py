"""Every JetStream stream and consumer syncyard uses, declared in one place.

Durability: JetStream acks are not fsyncs by default (nats-server's
`sync_interval` is 2 minutes). The event store, which commits with fsync, is
the record of truth; a command is acked only after its events are committed.
"""

from __future__ import annotations

import dataclasses
import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
    StreamSource,
)
from nats.js.errors import BadRequestError

from events.subjects import (
    COMMAND_NO_DEDUPE_STREAM,
    COMMAND_PREFIX,
    COMMAND_STREAM,
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENT_PREFIX,
    EVENT_STREAM,
    SPACE_COMMANDS,
)

log = logging.getLogger(__name__)

# Commands come on `syncyard.cmd.<op>` (the shared upstream login) and on their
# space's own `syncyard.space.<space>.cmd.<op>` (the only ones a tenant's login
# may publish on): one queue, one consumer takes both.
COMMAND_SUBJECTS = (f"{COMMAND_PREFIX}.>", SPACE_COMMANDS)

WORKER_CONSUMER = "syncyard-worker"
# The command stream keeps no duplicate window: JetStream drops a repeated
# `Nats-Msg-Id` across the whole stream, whatever subject carries it, and a
# tenant's login chooses the ids of what it sends on its own subject. With a
# window, acme could send `globex/sync-1` first and JetStream would drop globex's
# own `sync-1`, telling its publisher "duplicate" (SECURITY.md, "Command ids are
# per space"). A resent command reaches the worker instead, which recognises it
# by its space and command id (the connection, saga, breaker and institution
# aggregates) and answers it as a duplicate. nats-server reads a window of 0 as
# its 2-minute default, refuses one under 100 ms, and forgets an id only when a
# timer purges it: even the smallest window lets a tenant that keeps resending
# an id keep it taken. Since 2.14 a stream with a source may keep none, so the
# command stream sources an empty stream for that alone.
COMMAND_DUPLICATE_WINDOW_S = 0.0
# What is left on a nats-server older than 2.14, which gives the stream its default
# window anyway: the smallest it accepts, and a warning at every start.
COMMAND_FALLBACK_DUPLICATE_WINDOW_S = 0.1
# The relay republishes at most one unconfirmed batch after a crash; this is
# how long NATS remembers an event's id to drop the repeat.
EVENT_DUPLICATE_WINDOW_S = 3600.0
# Short, so a crashed worker's commands come back quickly; long calls send in_progress.
WORKER_ACK_WAIT_S = 10.0
WORKER_MAX_DELIVER = 8
# Dead letters are for a person to look at, not an archive: they go after this
# long (SYNCYARD_DEAD_LETTER_MAX_AGE_DAYS), however little they keep.
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600.0


def stream_configs(
    replicas: int = 1, *, dead_letter_max_age_s: float = DEAD_LETTER_MAX_AGE_S
) -> list[StreamConfig]:
    return [
        # Nothing publishes here (no role may but the operators' admin): it is the
        # command stream's source only so that stream may keep no duplicate window.
        StreamConfig(
            name=COMMAND_NO_DEDUPE_STREAM,
            subjects=[COMMAND_NO_DEDUPE_STREAM],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=COMMAND_STREAM,
            subjects=list(COMMAND_SUBJECTS),
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=COMMAND_DUPLICATE_WINDOW_S,
            sources=[StreamSource(name=COMMAND_NO_DEDUPE_STREAM)],
            num_replicas=replicas,
        ),
        StreamConfig(
            name=EVENT_STREAM,
            subjects=[f"{EVENT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=EVENT_DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=DLQ_STREAM,
            subjects=[f"{DLQ_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=dead_letter_max_age_s,
            num_replicas=replicas,
        ),
    ]


def worker_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=WORKER_CONSUMER,
        filter_subjects=list(COMMAND_SUBJECTS),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=WORKER_ACK_WAIT_S,
        max_deliver=WORKER_MAX_DELIVER,
        max_ack_pending=2048,
    )


async def declare_streams(
    js: JetStreamContext,
    replicas: int = 1,
    *,
    dead_letter_max_age_s: float = DEAD_LETTER_MAX_AGE_S,
) -> None:
    """Create or update every stream and the worker's durable consumer (idempotent).

    An existing stream is brought up to date, so a DLQ stream made before dead
    letters had a maximum age gets one (and drops the letters already older), a
    command stream and consumer made before commands had space subjects take them,
    and a command stream made with a duplicate window loses it (and the ids it held).
    """
    for config in stream_configs(replicas, dead_letter_max_age_s=dead_letter_max_age_s):
        try:
            info = await js.add_stream(config)
        except BadRequestError:  # exists with older settings: bring it up to date
            if config.name == EVENT_STREAM:
                # The event stream is the auditors' record: syncyard's own login may
                # not change it (an update could shrink its limits and drop events).
                log.warning(
                    "stream %s exists with other settings; left as it is (an operator "
                    "updates it with the admin login)",
                    config.name,
                )
                continue
            info = await js.update_stream(config)
        if config.name == COMMAND_STREAM:
            await _no_duplicate_window(js, config, info)
    await js.add_consumer(COMMAND_STREAM, worker_consumer_config())


async def _no_duplicate_window(
    js: JetStreamContext, config: StreamConfig, info: StreamInfo
) -> None:
    """On a nats-server that kept a duplicate window on the command stream anyway (older
    than 2.14): bring it down to the least it accepts, and say what is left open."""
    window = info.config.duplicate_window or 0.0
    if window <= 0:
        return
    if window > COMMAND_FALLBACK_DUPLICATE_WINDOW_S:
        window = COMMAND_FALLBACK_DUPLICATE_WINDOW_S
        await js.update_stream(dataclasses.replace(config, duplicate_window=window))
    log.warning(
        "nats-server keeps a %g s duplicate window on %s (a stream with a source may keep "
        "none from nats-server 2.14 on): a tenant that keeps sending another space's "
        "message id can make JetStream drop that space's command; upgrade nats-server",
        window,
        COMMAND_STREAM,
    )
