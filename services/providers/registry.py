"""Adapters built from configuration: one explicit table of the provider kinds we speak."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

import aiohttp
import msgspec

from services.providers.base import ProviderAdapter
from services.providers.mx import MxAdapter
from services.providers.plaid import PlaidAdapter


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where one provider lives and how we authenticate to it.

    `kind` picks the adapter and defaults to `name`, so a second Plaid account
    (say `plaid_eu`) is `name="plaid_eu", kind="plaid"`. `timeout_s` caps every
    call; a caller's tighter deadline still wins. For MX, `secret` is the API key.
    """

    name: str
    base_url: str
    client_id: str
    secret: str
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    kind: str | None = None

    def __repr__(self) -> str:
        return (
            f"ProviderSettings(name={self.name!r}, kind={self.kind!r}, "
            f"base_url={self.base_url!r}, client_id={self.client_id!r}, secret='***', "
            f"timeout_s={self.timeout_s!r})"
        )

    __str__ = __repr__


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
    return MxAdapter(
        session,
        base_url=s.base_url,
        client_id=s.client_id,
        api_key=s.secret,
        name=s.name,
        max_timeout_s=s.timeout_s,
    )


ADAPTER_FACTORIES: Mapping[str, AdapterFactory] = {
    "plaid": _plaid,
    "mx": _mx,
}


def build_providers(
    session: aiohttp.ClientSession, settings: Mapping[str, ProviderSettings]
) -> dict[str, ProviderAdapter]:
    """One adapter per configured provider, keyed by provider name.

    The session is shared and stays owned by the caller. Raises ValueError for
    a key that disagrees with its settings' name or a kind we do not speak.
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
        adapters[key] = factory(session, provider)
    return adapters
