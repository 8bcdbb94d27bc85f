"""The demos `syncyard up` prints for the regions beyond the US one: Mexico (Belvo → MX),
crypto (Bitso → the chain reader) and manual entry, each on its own account, to paste.

They run against the sandbox `up` serves (seed 7), whose test credentials are the
embedded defaults of `infra/provider_config.py`; README.md shows the same commands.
"""

from __future__ import annotations

from urllib.parse import quote

from infra.provider_config import PROVIDER_ENV

MX_ACCOUNT = "acct-mx-1"
CRYPTO_ACCOUNT = "acct-crypto-1"
MANUAL_ACCOUNT = "acct-cash-1"
MANUAL_LEDGER = "ledger-cash-1"
BITSO_KEY = "demoBitsoKey1"  # a read-only key the person made at bitso.com
WALLET = (
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"  # any valid address: the sandbox makes its history
)
# Banco Rebozo, as our directory, Belvo and MX name it (services/institutions/seed.toml).
MX_INSTITUTION, MX_BELVO_NAME, MX_BANK = "banco_rebozo", "bancorebozo_mx_retail", "Banco Rebozo"
SANDBOX_SEED = 7


def _sandbox_values() -> tuple[str, str]:
    """What the sandbox issues that a demo must quote: Bitso's secret for the demo key
    (bitso.com shows it once) and the id Belvo gives the demo person's link."""
    from sandbox.belvo_api_data import link_id  # noqa: PLC0415 - the sandbox is a tool of its own
    from sandbox.bitso_data import api_secret_for  # noqa: PLC0415

    # The MX sandbox names its user after our reference for the person: space/account.
    return api_secret_for(SANDBOX_SEED, BITSO_KEY), link_id(MX_BELVO_NAME, f"demo/{MX_ACCOUNT}")


def region_demos(*, send: str, auth: str, api: str, sandbox: str, run: str) -> str:
    """The three demos; `send` and `auth` are the command prefixes the banner uses."""
    bitso_secret, belvo_link = _sandbox_values()
    belvo_basic = ":".join(v.sandbox for v in PROVIDER_ENV["belvo"].variables if v.required)

    def account(name: str, region: str) -> str:
        return f'"space_id":"demo","account_id":"{name}","region":"{region}"'

    def register(name: str, region: str, provider: str, item: str, token: str) -> str:
        return (
            f'{send} connection.register \'{{"command_id":"reg-{provider}-{name}-{run}",'
            f'{account(name, region)},"provider":"{provider}","item_id":"{item}",'
            f'"access_token":"{token}"}}\''
        )

    def sync(name: str, n: int) -> str:
        return (
            f'{send} sync.transactions \'{{"command_id":"sync-{name}-{n}-{run}",'
            f'"space_id":"demo","account_id":"{name}"}}\''
        )

    def feed(name: str) -> str:
        return f"{auth} '{api}/v1/accounts/{name}/transactions/changes?space_id=demo&since=0'"

    def fault(provider: str, status: int, code: str) -> str:
        return (
            f'curl -X POST {sandbox}/_admin/faults -d \'{{"provider": "{provider}", '
            f'"status": {status}, "error_code": "{code}"}}\''
        )

    clear = f"curl -X DELETE {sandbox}/_admin/faults"
    mx_link = (
        f'{send} link.create \'{{"command_id":"link-mx-{run}",{account(MX_ACCOUNT, "MX")},'
        f'"institution_id":"{MX_INSTITUTION}","preferred_provider":"mx",'
        f'"country_codes":["MX"]}}\''
    )
    manual_url = f"{api}/v1/accounts/{MANUAL_ACCOUNT}/manual-entries/{MANUAL_LEDGER}?space_id=demo"

    def entry(amount: str, name: str) -> str:
        return (
            f'{{"entry_id": "e1", "account_id": "wallet", "amount": {amount}, '
            f'"date": "2026-12-01", "name": "{name}"}}'
        )

    cash = '{"account_id": "wallet", "name": "Cash wallet", "current": 40.0}'
    belvo_widget = (
        f"curl -s -u {belvo_basic} -H 'Content-Type: application/json' {sandbox}/belvo/api/links/ "
        f'-d \'{{"institution": "{MX_BELVO_NAME}", "username": "demo/{MX_ACCOUNT}", '
        '"password": "any"}\''
    )
    return f"""
Mexico, Belvo → MX: one person at {MX_BANK} behind both; Belvo goes down, MX serves.
The person links at Belvo (the sandbox plays Belvo's widget; the link's id is fixed)
and at MX (link.create's data.token is the widget; completing it answers a
public_token "USR-…:MBR-…", the user and the member):
  {belvo_widget}
  {register(MX_ACCOUNT, "MX", "belvo", belvo_link, belvo_link)}
  {mx_link}
  curl -X POST {sandbox}/_admin/links/mx/complete -d '{{"link_token": "<data.token>"}}'
  {register(MX_ACCOUNT, "MX", "mx", "<MBR-…>", "<USR-…>")}
  {fault("belvo", 500, "unexpected_error")}
  {sync(MX_ACCOUNT, 1)}
  {clear}
  {feed(MX_ACCOUNT)}
  curl '{sandbox}/_admin/truth/demo/{MX_ACCOUNT}?institution={quote(MX_BANK)}'    (the bank)

Crypto, Bitso → the chain reader: a Bitso read-only key and the wallet's address;
Bitso is down, so the chain reader serves the wallet's confirmed transactions:
  {register(CRYPTO_ACCOUNT, "CRYPTO", "bitso", BITSO_KEY, f"{BITSO_KEY}:{bitso_secret}")}
  {register(CRYPTO_ACCOUNT, "CRYPTO", "blockchain", f"bitcoin:{WALLET}", WALLET)}
  {fault("bitso", 500, "0101")}
  {sync(CRYPTO_ACCOUNT, 1)}
  {clear}
  {feed(CRYPTO_ACCOUNT)}
  curl {sandbox}/chain/address/{WALLET}/txs/chain    (the chain, newest first)

Manual entry: a person's own entries, kept in PostgreSQL; record them (an operator
of the space may), link the ledger, sync, edit one, sync again (a modification):
  {auth} -X POST '{manual_url}' -d '{{"accounts": [{cash}], "entries": [{entry("4.5", "Coffee")}]}}'
  {register(MANUAL_ACCOUNT, "MANUAL", "manual", MANUAL_LEDGER, MANUAL_LEDGER)}
  {sync(MANUAL_ACCOUNT, 1)}
  {auth} -X POST '{manual_url}' -d '{{"entries": [{entry("5.25", "Coffee and a tip")}]}}'
  {sync(MANUAL_ACCOUNT, 2)}
  {feed(MANUAL_ACCOUNT)}
"""
