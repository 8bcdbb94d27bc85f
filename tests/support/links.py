"""Links the provider sandbox accepts, one per account, in each adapter's convention."""

from __future__ import annotations

import hashlib

from sandbox.finicity_api_data import login_ids
from services.providers.base import LinkCredentials


def finicity_customer(account: str) -> str:
    """Finicity customer ids are numeric; the sandbox gives each one two logins."""
    return str(int(hashlib.sha256(account.encode()).hexdigest()[:12], 16) % (9 * 10**9) + 10**9)


def link_for(provider: str, account: str) -> LinkCredentials:
    """A link the sandbox accepts for `account`, in each adapter's convention (Finicity's:
    services/providers/finicity/adapter.py)."""
    if provider == "plaid":
        return LinkCredentials(
            provider="plaid", item_id=f"item-{account}", access_token=f"access-sandbox-{account}"
        )
    if provider == "finicity":
        customer = finicity_customer(account)
        return LinkCredentials(
            provider="finicity",
            item_id=f"{customer}:{login_ids(customer)[0]}",
            access_token=customer,
        )
    # MX's, and the shape tests give a provider syncyard does not know.
    return LinkCredentials(
        provider=provider, item_id=f"MBR-{account}", access_token=f"USR-{account}"
    )
