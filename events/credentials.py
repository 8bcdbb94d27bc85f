"""Events of the `Credential` aggregate: the one place an access token is kept.

Stored encrypted (the event store's cipher) and never relayed to
`syncyard.evt.*`: `PRIVATE_EVENT_TYPES` is what the relay skips.
"""

from __future__ import annotations

from events.base import DomainEvent


class CredentialStored(DomainEvent, frozen=True, kw_only=True):
    """An access token for one provider link."""

    provider: str
    item_id: str
    access_token: str

    def __repr__(self) -> str:
        return (
            f"CredentialStored(originator_id={self.originator_id!s}, provider={self.provider!r}, "
            f"item_id={self.item_id!r}, access_token='***')"
        )

    __str__ = __repr__


class CredentialForgotten(DomainEvent, frozen=True, kw_only=True):
    """The access token above is no longer kept: the store stops returning it.

    A saga's compensation records it when a link is undone, and the store
    when a new credential replaces this one at its provider (the
    `ProviderLinked` names the one it replaced). Recorded once: a credential
    already forgotten is not forgotten again. The store seals
    each token with a key of its credential's own and destroys that key when
    the credential is forgotten (`infra/credential_keys.py`), so the token
    left in the append-only log can never be read again.
    """

    reason: str


class PublicTokenReceived(DomainEvent, frozen=True, kw_only=True):
    """A link flow's one-time public token, kept until the saga exchanges it."""

    saga_id: str
    provider: str | None
    public_token: str

    def __repr__(self) -> str:
        return f"PublicTokenReceived(saga_id={self.saga_id!r}, public_token='***')"

    __str__ = __repr__


PRIVATE_EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    CredentialStored,
    CredentialForgotten,
    PublicTokenReceived,
)
