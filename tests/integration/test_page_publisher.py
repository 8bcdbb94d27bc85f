"""The relay's page publisher on a real JetStream: a page counts only when every message was stored.

A page that fails halfway (one subject no stream takes, or a stream that
refuses one message) must fail as a whole, so the relay keeps its position and
publishes the page again; the messages stored the first time are then dropped
as duplicates, and acks of the failed page do not count towards the next one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StreamConfig

from events.subjects import HEADER_MSG_ID
from infra.eventlog.page_publisher import OutgoingMessage, PagePublisher
from tests.support import bus

pytestmark = pytest.mark.integration

STREAM = "PAGETEST"


def page(*subjects: str) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(subject, f"payload {i}".encode(), {HEADER_MSG_ID: f"id-{i}"})
        for i, subject in enumerate(subjects, 1)
    ]


@pytest.fixture
async def admin(nats_url: str, clean_jetstream: None) -> AsyncIterator[Client]:
    client = await bus.connect(nats_url, bus.ADMIN)
    try:
        yield client
    finally:
        await client.close()


async def stored(client: Client) -> list[bytes]:
    jsm = client.jsm()
    info = await jsm.stream_info(STREAM)
    return [
        (await jsm.get_msg(STREAM, seq)).data or b""
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def test_a_page_with_a_subject_no_stream_takes_fails_whole_and_its_repeat_stores_each_once(
    admin: Client,
) -> None:
    jsm = admin.jsm()
    await jsm.add_stream(StreamConfig(name=STREAM, subjects=["pagetest.kept.>"]))
    publisher = PagePublisher(admin)
    halfway = page("pagetest.kept.a", "pagetest.lost.b", "pagetest.kept.c")

    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await publisher.publish(halfway)

    # The subject is taken now: the same page again stores only what was missing.
    await jsm.update_stream(StreamConfig(name=STREAM, subjects=["pagetest.>"]))
    await publisher.publish(halfway)
    assert sorted(await stored(admin)) == [b"payload 1", b"payload 2", b"payload 3"]


async def test_a_page_with_a_message_the_stream_refuses_fails_with_the_stream_s_error(
    admin: Client,
) -> None:
    await admin.jsm().add_stream(
        StreamConfig(name=STREAM, subjects=["pagetest.>"], max_msgs=2, discard=DiscardPolicy.NEW)
    )
    publisher = PagePublisher(admin)

    with pytest.raises(nats.js.errors.APIError) as refused:
        await publisher.publish(page("pagetest.a", "pagetest.b", "pagetest.c"))
    assert refused.value.err_code == 10077  # maximum messages exceeded
    assert await stored(admin) == [b"payload 1", b"payload 2"]


async def test_acks_of_a_failed_page_do_not_count_towards_the_next_one(admin: Client) -> None:
    jsm = admin.jsm()
    await jsm.add_stream(StreamConfig(name=STREAM, subjects=["pagetest.kept.>"]))
    publisher = PagePublisher(admin)
    # The server refuses the first message at once, so the page fails while the
    # stream is still storing the 500 after it: their acks arrive while the next
    # page waits. Counted for it, they would end its wait before its own
    # message was stored.
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await publisher.publish(page("pagetest.lost.a", *["pagetest.kept.b"] * 500))
    await publisher.publish(
        [OutgoingMessage("pagetest.kept.next", b"next", {HEADER_MSG_ID: "next"})]
    )
    after = await stored(admin)
    assert (len(after), after[-1]) == (501, b"next")
