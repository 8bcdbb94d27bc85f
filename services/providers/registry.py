"""Adapters built from configuration: one explicit table of the provider kinds we speak."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiohttp

from services.providers.base import ProviderAdapter
from services.providers.belvo.adapter import build_belvo
from services.providers.bitso.adapter import BitsoAdapter
from services.providers.blockchain.adapter import BlockchainAdapter
from services.providers.finicity.adapter import build_finicity
from services.providers.manual.adapter import ManualAdapter
from services.providers.manual.store import InMemoryManualEntries, ManualEntrySource
from services.providers.mx.adapter import MxAdapter
from services.providers.mx.webhooks import BasicCredentials
from services.providers.plaid.adapter import PlaidAdapter
from services.providers.settings import ProviderSettings

AdapterFactory = Callable[[aiohttp.ClientSession, ProviderSettings], ProviderAdapter]


def _plaid(session: aiohttp.ClientSession, s: ProviderSettings) -> ProviderAdapter:
    return PlaidAdapter(
        session,
        base_url=s.base_url,
        client_id=s.client_id,
        secret=s.secret,
        name=s.name,
        max_timeout_s=s.timeout_s,
    )


def _mx(session: aiohttp.ClientSession, s: ProviderSettings) -> ProviderAdapter:
    webhook_credentials = None
    if s.webhook_secret:
        username, _, password = s.webhook_secret.partition(":")
        webhook_credentials = BasicCredentials(username, password)
    return MxAdapter(
        session,
        base_url=s.base_url,
        client_id=s.client_id,
        api_key=s.secret,
        name=s.name,
        max_timeout_s=s.timeout_s,
        webhook_credentials=webhook_credentials,
    )


def _bitso(session: aiohttp.ClientSession, s: ProviderSettings) -> ProviderAdapter:
    # Bitso authenticates each person's own key pair, carried by their link, so
    # client_id and secret are not used. webhook_secret lists Bitso's webhook
    # public keys as "key_id:base64der,..." (public, despite the field's name).
    pairs = (p.partition(":") for p in (s.webhook_secret or "").split(",") if p)
    keys = {key_id: der for key_id, _, der in pairs}
    return BitsoAdapter(
        session, base_url=s.base_url, name=s.name, max_timeout_s=s.timeout_s, webhook_keys=keys
    )


def _blockchain(session: aiohttp.ClientSession, s: ProviderSettings) -> ProviderAdapter:
    # client_id names the network the reader serves; secret, if any, is a bearer token.
    return BlockchainAdapter(
        session,
        base_url=s.base_url,
        network=s.client_id or "bitcoin",
        api_token=s.secret,
        name=s.name,
        max_timeout_s=s.timeout_s,
    )


def _manual(session: aiohttp.ClientSession, s: ProviderSettings) -> ProviderAdapter:
    # Nothing to call: only the name is used. In memory unless `build_providers` is
    # given a lasting source (the composition root gives it PostgreSQL's).
    return ManualAdapter(InMemoryManualEntries(), name=s.name)


ADAPTER_FACTORIES: Mapping[str, AdapterFactory] = {
    "plaid": _plaid,
    "mx": _mx,
    "bitso": _bitso,
    "blockchain": _blockchain,
    "manual": _manual,
    "finicity": build_finicity,
    "belvo": build_belvo,
}


def build_providers(
    session: aiohttp.ClientSession,
    settings: Mapping[str, ProviderSettings],
    *,
    manual_entries: ManualEntrySource | None = None,
) -> dict[str, ProviderAdapter]:
    """One adapter per configured provider, keyed by provider name.

    The session is shared and stays owned by the caller; `manual_entries` is
    where manual providers read a person's entries (None: in memory, lost on
    restart). Raises ValueError for a key that disagrees with its settings'
    name or a kind we do not speak.
    """
    adapters: dict[str, ProviderAdapter] = {}
    for key, provider in settings.items():
        if key != provider.name:
            raise ValueError(f"provider settings under {key!r} are named {provider.name!r}")
        kind = provider.kind or provider.name
        factory = ADAPTER_FACTORIES.get(kind)
        if factory is None:
            known = ", ".join(sorted(ADAPTER_FACTORIES))
            raise ValueError(f"provider {key!r} has kind {kind!r}; known kinds: {known}")
        if kind == "manual" and manual_entries is not None:
            adapters[key] = ManualAdapter(manual_entries, name=provider.name)
        else:
            adapters[key] = factory(session, provider)
    return adapters
