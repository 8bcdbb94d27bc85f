"""Bitso's v3 REST API behind the provider port, signed with each person's own API key.

Bitso has no hosted link flow and no aggregator access: a person creates a
read-only ("view") API key at bitso.com and gives us the key and its secret.
So a link here is that key pair: `LinkCredentials.item_id` is the key (an
identifier, like a username) and `access_token` is `"<key>:<secret>"`, the
part that must stay out of logs. Each currency balance is an account; the
ledger, paged by its `marker` (the last entry id seen), is the transaction
feed, and that marker is our cursor.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import aiohttp

from services.providers.base import (
    AccountsPage,
    HealthStatus,
    Institution,
    LinkCredentials,
    LinkRequest,
    LinkToken,
    ProviderAdapter,
    ProviderCallError,
    TransactionsPage,
    WebhookEvent,
    WebhookRejectedError,
)
from services.providers.bitso.errors import bitso_error
from services.providers.bitso.signing import NonceSource, authorization
from services.providers.bitso.webhooks import load_public_keys, verify_delivery
from services.providers.bitso.wire import (
    MAX_LEDGER_PAGE,
    BalanceResponse,
    BooksResponse,
    LedgerResponse,
    normalise_balance,
    normalise_entry,
)
from services.providers.http import (
    INVALID_INPUT,
    ErrorRule,
    HttpReply,
    decode_json,
    invalid_response,
    send,
)

# Where a person creates the key pair they give us (Bitso's developer portal).
API_SETUP_URL = "https://bitso.com/api_setup"
LINK_TOKEN = "bitso-read-only-api-key"  # noqa: S105 - names the link mode, not a secret
INSTITUTION = Institution(
    institution_id="bitso",
    name="Bitso",
    country_codes=("MX", "AR", "BR", "CO"),
    products=("balances", "transactions"),
    url="https://bitso.com",
)


# A stored key pair we cannot read: only the person, giving it again, can fix it.
# The chain reader reads the same wallet without it, so a link there still serves.
_MALFORMED_KEY_PAIR = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=True, blame="caller"
)


class BitsoAdapter(ProviderAdapter):
    """Bitso API v3 with HMAC-SHA256 request signing.

    `webhook_keys` are Bitso's webhook public keys (key id -> base64 DER); with
    none, every webhook is refused. `remove_item` is local only: Bitso has no
    call to revoke a key on the owner's behalf, so the person revokes it at
    bitso.com and we simply forget it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        name: str = "bitso",
        max_timeout_s: float = 10.0,
        webhook_keys: Mapping[str, str] | None = None,
        nonces: NonceSource | None = None,
    ) -> None:
        self.name = name
        self._session = session
        self._base_url = base_url.rstrip("/")
        # The signed path is the one the server sees, so it includes any prefix.
        self._path_prefix = urlsplit(self._base_url).path
        self._max_timeout_s = max_timeout_s
        self._webhook_keys = load_public_keys(webhook_keys or {})
        self._nonces = nonces or NonceSource()

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        reply = await self._get("/v3/balance/", {}, link.access_token, timeout_s)
        parsed = decode_json(reply, BalanceResponse, provider=self.name, endpoint="/v3/balance/")
        try:
            accounts = [normalise_balance(link.item_id, b) for b in parsed.payload.balances]
        except ValueError:
            raise invalid_response(self.name, "/v3/balance/", reply.status, "bad decimal") from None
        return AccountsPage(accounts=accounts)

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        limit = max(1, min(count, MAX_LEDGER_PAGE))
        # Oldest first, after the marker: each page continues where the last stopped.
        query = {"sort": "asc", "limit": str(limit)}
        if cursor:
            query["marker"] = cursor
        reply = await self._get("/v3/ledger/", query, link.access_token, timeout_s)
        parsed = decode_json(reply, LedgerResponse, provider=self.name, endpoint="/v3/ledger/")
        try:
            added = [t for e in parsed.payload for t in normalise_entry(link.item_id, e)]
        except ValueError:
            raise invalid_response(self.name, "/v3/ledger/", reply.status, "bad decimal") from None
        entries = parsed.payload
        return TransactionsPage(
            added=added,
            # Bitso's ledger is append-only: nothing is ever edited or withdrawn.
            modified=[],
            removed=[],
            next_cursor=entries[-1].eid if entries else (cursor or ""),
            # Bitso says nothing of what is left: a full page may have more behind it.
            has_more=len(entries) == limit,
        )

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """Bitso's public book list: no key needed, and it touches no one's data."""
        started = time.perf_counter()
        try:
            reply = await self._get("/v3/available_books/", {}, None, timeout_s)
            books = decode_json(
                reply, BooksResponse, provider=self.name, endpoint="/v3/available_books/"
            )
        except ProviderCallError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            detail = f"{exc.error.type}/{exc.error.code}"
            return HealthStatus(healthy=False, latency_ms=elapsed, detail=detail)
        elapsed = (time.perf_counter() - started) * 1000
        return HealthStatus(
            healthy=books.success, latency_ms=elapsed, detail=f"{len(books.payload)} books"
        )

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """No hosted flow: the token names the mode and the URL is where to make a key.

        The app asks the person to create a key with only the "view" permission
        and sends back `"<key>:<secret>"` as the public token.
        """
        return LinkToken(token=LINK_TOKEN, url=API_SETUP_URL)

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        """Check a submitted `"<key>:<secret>"` by reading its balances once."""
        key, _, secret = public_token.partition(":")
        if not key or not secret:
            raise INVALID_INPUT.error(self.name, "invalid_api_key", "expected <key>:<secret>")
        await self._get("/v3/balance/", {}, public_token, timeout_s)
        return LinkCredentials(provider=self.name, item_id=key, access_token=public_token)

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """Nothing to delete at Bitso; the caller forgets the key pair."""

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        if institution_id != INSTITUTION.institution_id:
            raise INVALID_INPUT.error(
                self.name, "INSTITUTION_NOT_FOUND", "bitso serves only itself"
            )
        return INSTITUTION

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        in_country = not country_codes or set(country_codes) & set(INSTITUTION.country_codes)
        matches = query.strip().lower() in INSTITUTION.name.lower()
        return [INSTITUTION] if in_country and matches and limit > 0 else []

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        if not self._webhook_keys:
            raise WebhookRejectedError(f"{self.name}: no Bitso webhook public keys configured")
        return verify_delivery(self._webhook_keys, headers, body, provider=self.name)

    async def _get(
        self, endpoint: str, query: dict[str, str], access_token: str | None, timeout_s: float
    ) -> HttpReply:
        path_qs = endpoint + (f"?{urlencode(query)}" if query else "")
        headers: dict[str, str] = {}
        secrets: tuple[str, ...] = ()
        if access_token is not None:
            key, _, secret = access_token.partition(":")
            if not key or not secret:
                raise _MALFORMED_KEY_PAIR.error(
                    self.name, "invalid_access_token", "malformed key pair"
                )
            nonce = self._nonces.next()
            headers["Authorization"] = authorization(
                key, secret, nonce, method="GET", path_qs=self._path_prefix + path_qs
            )
            secrets = (secret, access_token)
        reply = await send(
            self._session,
            "GET",
            self._base_url + path_qs,
            provider=self.name,
            endpoint=endpoint,
            timeout_s=min(timeout_s, self._max_timeout_s),
            headers=headers,
        )
        if not reply.ok:
            raise bitso_error(
                reply.status,
                reply.body,
                provider=self.name,
                retry_after_s=reply.retry_after_s,
                secrets=secrets,
                endpoint=endpoint,
            )
        return reply
