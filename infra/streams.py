"""Every JetStream stream and consumer syncyard uses, declared in one place.

Durability: JetStream acks are not fsyncs by default (nats-server's
`sync_interval` is 2 minutes). The event store, which commits with fsync, is
the record of truth; a command is acked only after its events are committed.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from events.subjects import (
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
# A resent command within this window is dropped by NATS itself; after it, the
# Connection aggregate recognises the command id.
COMMAND_DUPLICATE_WINDOW_S = 120.0
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
        StreamConfig(
            name=COMMAND_STREAM,
            subjects=list(COMMAND_SUBJECTS),
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=COMMAND_DUPLICATE_WINDOW_S,
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
    letters had a maximum age gets one (and drops the letters already older), and
    a command stream and consumer made before commands had space subjects take them.
    """
    for config in stream_configs(replicas, dead_letter_max_age_s=dead_letter_max_age_s):
        try:
            await js.add_stream(config)
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
            await js.update_stream(config)
    await js.add_consumer(COMMAND_STREAM, worker_consumer_config())
