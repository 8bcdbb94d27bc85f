"""Where one provider lives and how we authenticate to it: shared by every adapter."""

from __future__ import annotations

from typing import Annotated

import msgspec


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where one provider lives and how we authenticate to it.

    `kind` picks the adapter and defaults to `name`, so a second Plaid account
    (say `plaid_eu`) is `name="plaid_eu", kind="plaid"`. `timeout_s` caps every
    call; a caller's tighter deadline still wins. For MX, `secret` is the API key,
    and `webhook_secret` is `username:password`, the HTTP Basic credentials MX was
    given for webhooks (MX does not sign them); Plaid needs none (it signs with
    keys fetched by API).
    """

    name: str
    base_url: str
    client_id: str
    secret: str
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    kind: str | None = None
    webhook_secret: str | None = None

    def __repr__(self) -> str:
        return (
            f"ProviderSettings(name={self.name!r}, kind={self.kind!r}, "
            f"base_url={self.base_url!r}, client_id={self.client_id!r}, secret='***', "
            f"timeout_s={self.timeout_s!r}, "
            f"webhook_secret={'***' if self.webhook_secret else None!r})"
        )

    __str__ = __repr__
