"""Put a provider's official OpenAPI document where the spec tests read it.

    python -m tests.specs.refresh plaid                 # the pinned commit, from GitHub
    python -m tests.specs.refresh mx --from-git DIR     # from a local clone instead
    python -m tests.specs.refresh mx --commit SHA       # another commit: prints its sha256
    python -m tests.specs.refresh --check               # the files here are the pinned ones

At the pinned commit the file must hash to the pinned sha256. At another
commit the script writes the file and prints the commit and sha256 to put in
`PINS` below and in the provider's README.md. MX's spec is vendored (MIT, its
LICENSE beside it); Plaid's repository states no licence, so its spec is not
committed (`plaid/.gitignore`): fetch it to run the Plaid spec tests.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import urllib.request
from pathlib import Path

import msgspec

HERE = Path(__file__).parent


class Pin(msgspec.Struct, frozen=True, kw_only=True):
    repository: str
    path: str
    commit: str
    sha256: str
    target: Path
    license_path: str | None = None


PINS: dict[str, Pin] = {
    "plaid": Pin(
        repository="plaid/plaid-openapi",
        path="2020-09-14.yml",
        commit="26f1a0588c12e765e99c815300d94eae0a3c7dc1",
        sha256="fb8c3f188d8b1c917f2b184b720a96361f2ee72f5d595d189e8b4513a1d62930",
        target=HERE / "plaid" / "2020-09-14.yml",
    ),
    "mx": Pin(
        repository="mxenabled/openapi",
        path="openapi/v20111101.yml",
        commit="61085cf486f5ab774eb15f3b8c85102d94481815",
        sha256="ca1835b3c7a8515d06418e1893154c54ea9db8ec2d31f1a532ec13e1e3ed45a3",
        target=HERE / "mx" / "v20111101.yml",
        license_path="LICENSE",
    ),
}


def _read(pin: Pin, path: str, commit: str, from_git: Path | None) -> bytes:
    if from_git is not None:
        return subprocess.run(
            ["git", "-C", str(from_git), "show", f"{commit}:{path}"],
            check=True,
            capture_output=True,
        ).stdout
    url = f"https://raw.githubusercontent.com/{pin.repository}/{commit}/{path}"
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
        return body


def refresh(name: str, commit: str | None, from_git: Path | None) -> int:
    pin = PINS[name]
    commit = commit or pin.commit
    content = _read(pin, pin.path, commit, from_git)
    digest = hashlib.sha256(content).hexdigest()
    if commit == pin.commit and digest != pin.sha256:
        print(f"{name}: {pin.path} at {commit} hashes to {digest}, not {pin.sha256}")
        return 1
    pin.target.write_bytes(content)
    if pin.license_path is not None:
        licence = _read(pin, pin.license_path, commit, from_git)
        (pin.target.parent / "LICENSE").write_bytes(licence)
    print(f"{name}: wrote {pin.target} ({len(content)} bytes)")
    if commit != pin.commit:
        print(f"  new pin: commit={commit} sha256={digest}; update PINS and the README")
    return 0


def check() -> int:
    status = 0
    for name, pin in PINS.items():
        if not pin.target.exists():
            print(f"{name}: {pin.target} is absent (python -m tests.specs.refresh {name})")
            continue
        digest = hashlib.sha256(pin.target.read_bytes()).hexdigest()
        if digest != pin.sha256:
            print(f"{name}: {pin.target} hashes to {digest}, not the pinned {pin.sha256}")
            status = 1
        else:
            print(f"{name}: {pin.target} is {pin.repository}@{pin.commit[:12]}:{pin.path}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("provider", nargs="?", choices=sorted(PINS))
    parser.add_argument("--commit", help="another commit than the pinned one")
    parser.add_argument("--from-git", type=Path, help="a local clone to read from")
    parser.add_argument("--check", action="store_true", help="verify the files present")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if args.provider is None:
        parser.error("name a provider, or --check")
    return refresh(args.provider, args.commit, args.from_git)


if __name__ == "__main__":
    sys.exit(main())
