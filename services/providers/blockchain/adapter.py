"""A read-only on-chain reader: a wallet's balance and transfers from an Esplora-style API.

A link is a watched address: `LinkCredentials.item_id` is `"<network>:<address>"`
and `access_token` the address. An address is not a credential, but it ties
a person to their whole on-chain history, so error messages never carry it
(they name the endpoint template `{address}`) and account ids are hashed.
There is nothing to sign up for at the reader, so linking is checking the
address's format and checksum, and removing a link is forgetting it.
Only confirmed transactions are synced: a mempool transaction can still be
replaced or dropped, and would surface as a phantom later.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import quote

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
from services.providers.blockchain.address import NETWORKS, is_valid_address
from services.providers.blockchain.errors import chain_error
from services.providers.blockchain.wire import (
    AddressInfo,
    ChainCursor,
    Tx,
    normalise_address,
    normalise_tx,
    plan_page,
)
from services.providers.http import INVALID_INPUT, ErrorRule, HttpReply, decode_json, send

ADDRESS = "/address/{address}"
CHAIN_TXS = "/address/{address}/txs/chain"
CHAIN_TXS_AFTER = "/address/{address}/txs/chain/{last_txid}"


# A watched address that fails its checksum: the caller registered it, and no
# reader, here or elsewhere, will read it.
_NOT_AN_ADDRESS = ErrorRule("auth", False, failover_helps=False, blame="caller")


class BlockchainAdapter(ProviderAdapter):
    """Esplora's REST API (Blockstream's, mempool.space's, or a self-hosted one).

    One adapter reads one `network` (bitcoin, testnet, signet or regtest): the
    reader at `base_url` serves one chain. `api_token`, when set, is sent as a
    bearer token, for readers behind a gateway that wants one.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        network: str = "bitcoin",
        api_token: str = "",
        name: str = "blockchain",
        max_timeout_s: float = 10.0,
    ) -> None:
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; known: {', '.join(sorted(NETWORKS))}")
        self.name = name
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._network = network
        self._api_token = api_token
        self._headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self._max_timeout_s = max_timeout_s
        self._institution = Institution(
            institution_id=network,
            name=f"{network.capitalize()} blockchain",
            products=("balances", "transactions"),
        )

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        address = self._address(link)
        reply = await self._get(ADDRESS, address, (), timeout_s)
        info = decode_json(reply, AddressInfo, provider=self.name, endpoint=ADDRESS)
        return AccountsPage(accounts=[normalise_address(self._network, info)])

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        address = self._address(link)
        at = ChainCursor.decode(cursor)
        if at is None:
            raise INVALID_INPUT.error(self.name, "INVALID_CURSOR", "cursor is not this reader's")
        if at.last:
            reply = await self._get(CHAIN_TXS_AFTER, address, (at.last,), timeout_s)
            endpoint = CHAIN_TXS_AFTER
        else:
            reply = await self._get(CHAIN_TXS, address, (), timeout_s)
            endpoint = CHAIN_TXS
        txs = decode_json(reply, list[Tx], provider=self.name, endpoint=endpoint)
        page, next_cursor, has_more = plan_page(at, txs, count)
        return TransactionsPage(
            added=[normalise_tx(self._network, address, t) for t in page],
            # Confirmed transactions do not change; a reorg deep enough to drop
            # one is not handled here.
            modified=[],
            removed=[],
            next_cursor=next_cursor.encode(),
            has_more=has_more,
        )

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """The reader's chain tip: up if it answers a block height."""
        started = time.perf_counter()
        try:
            reply = await self._get("/blocks/tip/height", None, (), timeout_s)
        except ProviderCallError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return HealthStatus(
                healthy=False, latency_ms=elapsed, detail=f"{exc.error.type}/{exc.error.code}"
            )
        elapsed = (time.perf_counter() - started) * 1000
        height = reply.body.decode("ascii", errors="replace").strip()
        return HealthStatus(
            healthy=height.isdigit(), latency_ms=elapsed, detail=f"tip {height[:12]}"
        )

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """No flow at the reader: the token names the network whose address to ask for.

        The app asks the person for a wallet address and sends it back as the
        public token (`"<address>"` or `"<network>:<address>"`).
        """
        if request.institution_id not in (None, self._network):
            raise INVALID_INPUT.error(
                self.name, "UNSUPPORTED_NETWORK", "this reader serves another chain"
            )
        return LinkToken(token=f"address:{self._network}")

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        """Check the address's format and checksum, then that the reader knows it."""
        network, _, address = public_token.rpartition(":")
        if network not in ("", self._network) or not is_valid_address(address, self._network):
            raise INVALID_INPUT.error(
                self.name, "INVALID_ADDRESS", f"not a {self._network} address"
            )
        await self._get(ADDRESS, address, (), timeout_s)
        return LinkCredentials(
            provider=self.name, item_id=f"{self._network}:{address}", access_token=address
        )

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """Nothing is registered at the reader; the caller forgets the address."""

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        if institution_id != self._network:
            raise INVALID_INPUT.error(
                self.name, "INSTITUTION_NOT_FOUND", "this reader serves another chain"
            )
        return self._institution

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        # A chain has no country: it matches whatever countries were asked for.
        matches = query.strip().lower() in self._institution.name.lower()
        return [self._institution] if matches and limit > 0 else []

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        raise WebhookRejectedError(f"{self.name}: a chain reader sends no webhooks")

    def _address(self, link: LinkCredentials) -> str:
        if not is_valid_address(link.access_token, self._network):
            raise _NOT_AN_ADDRESS.error(
                self.name, "INVALID_ADDRESS", f"link holds no {self._network} address"
            )
        return link.access_token

    async def _get(
        self, template: str, address: str | None, extra: tuple[str, ...], timeout_s: float
    ) -> HttpReply:
        path = template
        if address is not None:
            path = path.replace("{address}", quote(address, safe=""))
        for value in extra:
            path = path.replace("{last_txid}", quote(value, safe=""))
        reply = await send(
            self._session,
            "GET",
            self._base_url + path,
            provider=self.name,
            endpoint=template,
            timeout_s=min(timeout_s, self._max_timeout_s),
            headers=self._headers,
        )
        if not reply.ok:
            secrets = (address, self._api_token) if address else (self._api_token,)
            raise chain_error(
                reply.status,
                reply.body,
                provider=self.name,
                retry_after_s=reply.retry_after_s,
                secrets=secrets,
                endpoint=template,
            )
        return reply
