"""The provider sandbox's admin API (sandbox/README.md), as tests and benchmarks drive it."""

from __future__ import annotations

from typing import Any

import aiohttp


class SandboxAdmin:
    """Faults, scenarios, resets, the bank's clock and call counts of one sandbox, over a
    session the caller owns."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def _send(self, method: str, path: str, body: object = None) -> Any:
        async with self.session.request(method, self.url + path, json=body) as resp:
            if resp.status >= 300:
                raise AssertionError(f"{method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    async def fault(self, **fault: object) -> None:
        await self._send("POST", "/_admin/faults", fault)

    async def clear_faults(self) -> None:
        await self._send("DELETE", "/_admin/faults")

    async def reset(self) -> None:
        """No faults, no call counts, the dice re-seeded."""
        await self._send("POST", "/_admin/reset")

    async def scenario(self, name: str | None) -> None:
        await self._send("PUT", "/_admin/scenario", {"name": name})

    async def complete_link(self, provider: str, link_token: str) -> dict[str, Any]:
        """The person finishes the link UI; the answer carries the public token."""
        answer: dict[str, Any] = await self._send(
            "POST", f"/_admin/links/{provider}/complete", {"link_token": link_token}
        )
        return answer

    async def item_webhook(self, provider: str, item_id: str, **fields: object) -> dict[str, Any]:
        """The provider's webhook about a linked item (sandbox/item_webhooks.py), sent and
        answered: the payload and each delivery's status."""
        answer: dict[str, Any] = await self._send(
            "POST", f"/_admin/webhooks/{provider}/item", {"item_id": item_id, **fields}
        )
        return answer

    async def advance(
        self, person: str, *, days: float | None = None, transactions: int | None = None
    ) -> Any:
        """Run the person's bank forward `days`, or by its next `transactions` events."""
        body = {"days": days} if transactions is None else {"transactions": transactions}
        return await self._send("POST", f"/_admin/truth/{person}/advance", body)

    async def calls(self) -> Any:
        """Calls received per provider and endpoint, as the sandbox counts them."""
        return await self._send("GET", "/_admin/calls")

    async def calls_per_provider(self) -> dict[str, int]:
        """Calls received per provider, every endpoint together."""
        counts = await self.calls()
        return {
            provider: sum(c["calls"] for c in endpoints.values())
            for provider, endpoints in counts.items()
        }
