"""Bitcoin address checks: base58check (P2PKH, P2SH) and bech32/bech32m (SegWit, Taproot).

A link to a wallet is only its address, so a typo would silently link an
empty wallet; the checksums catch that before any call is made.
"""

from __future__ import annotations

import hashlib

# network -> (bech32 human-readable part, base58 version bytes for P2PKH and P2SH)
NETWORKS: dict[str, tuple[str, frozenset[int]]] = {
    "bitcoin": ("bc", frozenset({0x00, 0x05})),
    "testnet": ("tb", frozenset({0x6F, 0xC4})),
    "signet": ("tb", frozenset({0x6F, 0xC4})),
    "regtest": ("bcrt", frozenset({0x6F, 0xC4})),
}

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST, _BECH32M_CONST = 1, 0x2BC830A3
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def is_valid_address(address: str, network: str = "bitcoin") -> bool:
    """Whether `address` is a well-formed address of `network`, checksum included."""
    if network not in NETWORKS:
        return False
    hrp, versions = NETWORKS[network]
    if address.lower().startswith(hrp + "1"):
        return _valid_segwit(address, hrp)
    return _base58_version(address) in versions


def _base58_version(address: str) -> int | None:
    if not 26 <= len(address) <= 35 or any(c not in _BASE58 for c in address):
        return None
    number = 0
    for char in address:
        number = number * 58 + _BASE58.index(char)
    raw = number.to_bytes(25, "big") if number < 1 << 200 else b""
    if len(raw) != 25:
        return None
    payload, checksum = raw[:21], raw[21:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        return None
    return payload[0]


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def _valid_segwit(address: str, hrp: str) -> bool:
    if address not in (address.lower(), address.upper()) or len(address) > 90:
        return False
    text = address.lower()
    data_part = text[len(hrp) + 1 :]
    if len(data_part) < 7 or any(c not in _BECH32 for c in data_part):
        return False
    data = [_BECH32.index(c) for c in data_part]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    const = _polymod(expanded + data)
    version, program = data[0], _to_bytes(data[1:-6])
    if program is None or version > 16 or not 2 <= len(program) <= 40:
        return False
    if version == 0:
        # BIP173: v0 uses bech32 and is a 20-byte key hash or 32-byte script hash.
        return const == _BECH32_CONST and len(program) in (20, 32)
    return const == _BECH32M_CONST  # BIP350: v1+ (Taproot) uses bech32m


def _to_bytes(groups: list[int]) -> bytes | None:
    """5-bit groups to bytes; None if the padding is not zero, as BIP173 requires."""
    accumulator, bits, out = 0, 0, bytearray()
    for group in groups:
        accumulator = (accumulator << 5) | group
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((accumulator >> bits) & 0xFF)
    if bits >= 5 or (accumulator << (8 - bits)) & 0xFF:
        return None
    return bytes(out)
