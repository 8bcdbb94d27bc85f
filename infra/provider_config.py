"""Each provider's settings read from the environment, and what stops one from starting.

One table (`PROVIDER_ENV`) says, per provider, which `SYNCYARD_<NAME>_<FIELD>`
variables it reads, which `ProviderSettings` field each fills, which are
required outside the embedded mode, and the sandbox's test value used inside
it. A provider that needs no secret of ours (Bitso signs with each person's
own key, a public chain reader, manual entry) lists none as required, so it is
never refused for lacking one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from services.providers.settings import ProviderSettings

Field = Literal["client_id", "secret", "webhook_secret"]


class Variable(msgspec.Struct, frozen=True):
    """`SYNCYARD_<NAME>_<suffix>` fills `field`; `sandbox` is its embedded default.

    README.md ("Configuration") says what each one means to its provider.
    """

    suffix: str
    field: Field
    required: bool = False
    sandbox: str = ""


class ProviderEnv(msgspec.Struct, frozen=True, kw_only=True):
    """How one provider is configured.

    `sandbox_path` is where the sandbox serves it (None: it calls nothing, so it
    has no address at all). `enable` is the variable that turns on a provider
    with nothing else to set outside the embedded mode. `joined` makes one field
    from several variables (Finicity's secret is `<app key>:<partner secret>`).
    """

    sandbox_path: str | None
    variables: tuple[Variable, ...] = ()
    joined: tuple[str, ...] = ()
    enable: str | None = None


_PLAID_LIKE = (
    Variable("CLIENT_ID", "client_id", True, "sandbox-client"),
    Variable("SECRET", "secret", True, "sandbox-secret"),
)

PROVIDER_ENV: Mapping[str, ProviderEnv] = {
    "plaid": ProviderEnv(sandbox_path="/plaid", variables=_PLAID_LIKE),
    "mx": ProviderEnv(
        sandbox_path="/mx",
        variables=(
            *_PLAID_LIKE,
            Variable("WEBHOOK_SECRET", "webhook_secret"),
        ),
    ),
    "finicity": ProviderEnv(
        sandbox_path="/finicity",
        variables=(
            Variable("PARTNER_ID", "client_id", True, "2445583925753"),
            Variable("APP_KEY", "secret", True, "sandbox-app-key"),
            Variable("PARTNER_SECRET", "secret", True, "sandbox-partner-secret"),
        ),
        joined=("APP_KEY", "PARTNER_SECRET"),
    ),
    "belvo": ProviderEnv(
        sandbox_path="/belvo",
        variables=(
            Variable("SECRET_ID", "client_id", True, "sandbox-secret-id"),
            Variable("SECRET_PASSWORD", "secret", True, "sandbox-secret-password"),
            Variable("WEBHOOK_SECRET", "webhook_secret"),
        ),
    ),
    # Bitso authenticates each person's own key pair, carried by their link.
    "bitso": ProviderEnv(
        sandbox_path="/bitso",
        variables=(Variable("WEBHOOK_KEYS", "webhook_secret"),),
    ),
    # A public Esplora needs no token; a gateway in front of one may want one.
    "blockchain": ProviderEnv(
        sandbox_path="/chain",
        variables=(
            Variable("NETWORK", "client_id", sandbox="bitcoin"),
            Variable("API_TOKEN", "secret"),
        ),
    ),
    "manual": ProviderEnv(sandbox_path=None, enable="ENABLED"),
}


def provider_variable(name: str, field: str) -> str:
    """`SYNCYARD_PLAID_BASE_URL` and the like."""
    return f"SYNCYARD_{name.upper()}_{field}"


def _asked_for(env: Mapping[str, str], name: str, spec: ProviderEnv) -> bool:
    """Whether the environment turns the provider on: any of its variables set (an
    `enable` one only to a yes)."""
    suffixes = ["BASE_URL", "TIMEOUT_S"] if spec.sandbox_path is not None else ["TIMEOUT_S"]
    suffixes += [v.suffix for v in spec.variables]
    if spec.enable and env.get(provider_variable(name, spec.enable), "") in ("1", "true", "yes"):
        return True
    return any(env.get(provider_variable(name, s)) for s in suffixes)


def provider_settings(
    env: Mapping[str, str], sandbox_url: str, *, embedded: bool
) -> dict[str, ProviderSettings]:
    """The providers the environment names.

    Embedded, every provider defaults to the sandbox and its test credentials.
    Outside it nothing is filled in: a provider is configured when any of its
    variables is set, and what it lacks is left empty for `provider_refusals`
    to name (a missing base URL must never fall back to the sandbox's local
    port, which would send access tokens in clear to whatever listens there).
    """
    providers = {}
    for name, spec in PROVIDER_ENV.items():
        if not embedded and not _asked_for(env, name, spec):
            continue
        values = {
            v.suffix: env.get(provider_variable(name, v.suffix)) or (v.sandbox if embedded else "")
            for v in spec.variables
        }
        fields: dict[str, str | None] = {"client_id": "", "secret": ""}
        for v in spec.variables:
            fields[v.field] = values[v.suffix] or fields.get(v.field) or None
        if spec.joined:
            parts = [values[s] for s in spec.joined]
            # Kept even when a part is missing, so `provider_refusals` names that part.
            fields["secret"] = ":".join(parts) if any(parts) else ""
        base_url = ""
        if spec.sandbox_path is not None:
            base_url = env.get(provider_variable(name, "BASE_URL")) or (
                f"{sandbox_url}{spec.sandbox_path}" if embedded else ""
            )
        provider = ProviderSettings(
            name=name,
            base_url=base_url,
            client_id=fields["client_id"] or "",
            secret=fields["secret"] or "",
            webhook_secret=fields.get("webhook_secret"),
        )
        if timeout := env.get(provider_variable(name, "TIMEOUT_S")):
            provider = msgspec.structs.replace(provider, timeout_s=float(timeout))
        providers[name] = provider
    return providers


def provider_refusals(
    name: str, provider: ProviderSettings, *, insecure_ok: bool, mask: Callable[[str], str]
) -> list[str]:
    """What keeps one configured provider from starting outside the embedded mode.

    `mask` hides a URL's password: the reasons are printed.
    """
    spec = PROVIDER_ENV.get(provider.kind or name)
    if spec is None:
        return []
    reasons = []
    if spec.sandbox_path is not None:
        base = provider_variable(name, "BASE_URL")
        scheme = urlsplit(provider.base_url).scheme if provider.base_url else ""
        if not provider.base_url:
            reasons.append(f"{base} is not set: {name} is configured but has no address")
        elif scheme != "https" and not (insecure_ok and scheme == "http"):
            reasons.append(
                f"{base} must be an https:// URL, got {mask(provider.base_url)!r}: access "
                "tokens must not travel in clear (SYNCYARD_INSECURE_PROVIDERS=1 allows http:// "
                "for tests against the sandbox)"
            )
    for variable in spec.variables:
        if variable.required and not _has(provider, spec, variable):
            reasons.append(f"{provider_variable(name, variable.suffix)} is not set")
    return reasons


def _has(provider: ProviderSettings, spec: ProviderEnv, variable: Variable) -> bool:
    if variable.suffix in spec.joined:
        parts = provider.secret.split(":", len(spec.joined) - 1) if provider.secret else []
        index = spec.joined.index(variable.suffix)
        return index < len(parts) and bool(parts[index])
    return bool(getattr(provider, variable.field))
