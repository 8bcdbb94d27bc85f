"""What the fake providers remember about links: tokens issued, exchanged and removed.

Plaid: link tokens → sessions, one-time public tokens → the access token they
exchange for, who each access token belongs to, removed access tokens. MX:
users by partner id, widget URLs → their user, members created by the widget,
removed members. Tokens are drawn from a seeded generator, so a run repeats
after `/_admin/reset`.

It also answers whose bank, at which institution, a link reads (`truth.py`):
a token or user the link flow issued belongs to the person who linked (the
`client_user_id` at Plaid, the user's partner id at MX); a bare one names its
person: `access-sandbox-<person>`, `USR-<person>`.
"""

from __future__ import annotations

import functools
import hashlib
import random

import msgspec
from aiohttp import web

from sandbox.institutions import FakeInstitution, by_id
from sandbox.truth import default_institution

_ALPHABET = "abcdef0123456789"


class PlaidSession(msgspec.Struct, kw_only=True):
    """One `/link/token/create`: who links, where webhooks go, and (update mode) which Item."""

    user_ref: str
    webhook: str | None
    access_token: str | None = None
    products: tuple[str, ...] = ()


# How far Plaid's transaction pulls for a new Item have come (`transactions_update_status`).
NOT_READY = "NOT_READY"
INITIAL_UPDATE_COMPLETE = "INITIAL_UPDATE_COMPLETE"
HISTORICAL_UPDATE_COMPLETE = "HISTORICAL_UPDATE_COMPLETE"


class PlaidItem(msgspec.Struct, kw_only=True):
    """An Item the link flow made: its webhook, its products, how far Plaid's pulls are.

    A new Item's transactions are not ready at first; the first
    `/transactions/sync` answers NOT_READY, later ones the last 30 days
    (INITIAL_UPDATE_COMPLETE) until a caller has paged to their end, then the
    whole history (HISTORICAL_UPDATE_COMPLETE). A bare token's Item has none
    of this: it was made long ago.
    """

    webhook: str | None
    products: tuple[str, ...]
    update_status: str = NOT_READY


class MxWidget(msgspec.Struct, kw_only=True):
    user_guid: str
    member_guid: str | None = None
    institution_code: str | None = None


class LinkBook:
    """Link state for both fake providers, in memory, for one sandbox."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(f"{self._seed}:links")
        self.plaid_sessions: dict[str, PlaidSession] = {}
        self.plaid_public_tokens: dict[str, str] = {}
        self.plaid_institutions: dict[str, str] = {}
        self.plaid_people: dict[str, str] = {}
        self.plaid_removed: set[str] = set()
        self.plaid_items: dict[str, PlaidItem] = {}
        self.mx_users: dict[str, str] = {}
        self.mx_widgets: dict[str, MxWidget] = {}
        self.mx_members: dict[str, str] = {}
        self.mx_removed: set[str] = set()

    def uuid(self) -> str:
        digits = "".join(self._rng.choice(_ALPHABET) for _ in range(32))
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def plaid_person(self, access_token: str) -> str:
        """Who an access token's Item belongs to."""
        return self.plaid_people.get(access_token) or access_token.removeprefix("access-sandbox-")

    def plaid_institution(self, access_token: str) -> FakeInstitution:
        """The institution an access token's Item is at (a bare token: its person's bank)."""
        chosen = self.plaid_institutions.get(access_token)
        found = by_id(self._seed, "plaid", chosen) if chosen else None
        return found or default_institution(self._seed, self.plaid_person(access_token))

    def mx_person(self, user_guid: str) -> str:
        """Who an MX user is: the partner's id for a user made by `POST /users`."""
        for user_ref, guid in self.mx_users.items():
            if guid == user_guid:
                return user_ref
        return user_guid.removeprefix("USR-")

    def mx_institution(self, user_guid: str, member_guid: str) -> FakeInstitution:
        """The institution a member is at (a bare member: its person's bank)."""
        chosen = self.mx_members.get(member_guid)
        found = by_id(self._seed, "mx", chosen) if chosen else None
        return found or default_institution(self._seed, self.mx_person(user_guid))

    def issue_plaid_public_token(
        self,
        institution_id: str,
        person: str,
        *,
        webhook: str | None = None,
        products: tuple[str, ...] = ("transactions",),
    ) -> str:
        """A public token that exchanges, once, for a fresh access token at `institution_id`."""
        public_token = f"public-sandbox-{self.uuid()}"
        access_token = f"access-sandbox-{self.uuid()}"
        self.plaid_public_tokens[public_token] = access_token
        self.plaid_institutions[access_token] = institution_id
        self.plaid_people[access_token] = person
        self.plaid_items[access_token] = PlaidItem(webhook=webhook, products=products)
        return public_token

    def plaid_item_id(self, access_token: str) -> str:
        """A stable Item id per access token, unrelated to it to the eye."""
        return _plaid_item_id(self._seed, access_token)

    def plaid_item_webhook(self, item_id: str) -> str | None:
        """The webhook URL of the link-flow Item with this id (None: unknown, or none set)."""
        for access_token, item in self.plaid_items.items():
            if self.plaid_item_id(access_token) == item_id:
                return item.webhook
        return None

    def mx_user(self, user_ref: str) -> tuple[str, bool]:
        """The guid of the user with partner id `user_ref`, and whether it was just created."""
        if user_ref in self.mx_users:
            return self.mx_users[user_ref], False
        guid = f"USR-{self.uuid()}"
        self.mx_users[user_ref] = guid
        return guid, True

    def mx_member(self, institution_code: str) -> str:
        guid = f"MBR-{self.uuid()}"
        self.mx_members[guid] = institution_code
        return guid


@functools.lru_cache(maxsize=4096)
def _plaid_item_id(seed: int, access_token: str) -> str:
    # Remembered: every Plaid call asks for its Item's id (issue #13).
    return hashlib.sha256(f"{seed}:item:{access_token}".encode()).hexdigest()[:32]


LINKS = web.AppKey("links", LinkBook)
