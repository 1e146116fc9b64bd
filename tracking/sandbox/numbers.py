"""Valid-looking tracking numbers for the sandbox: right format and right check digit, one series per carrier.

The check-digit rules are the carriers' public label rules (UPS 1Z mod 10, FedEx Express 12-digit weighted mod 11,
USPS IMpb mod 10, DHL Express mod 7, UPU S10 for the 17TRACK long tail), written here independently of
tracking/detection so that each checks the other in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator

_FEDEX_WEIGHTS = (3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def _ups_value(char: str) -> int:
    return int(char) if char.isdigit() else (ord(char) - 3) % 10


def ups_number(sequence: int) -> str:
    """1Z + shipper (6) + service (2) + package (7) + mod-10 check digit."""
    serial = f"SB0001{'03'}{sequence % 10**7:07d}"
    total = sum(_ups_value(char) * (2 if index % 2 else 1) for index, char in enumerate(serial))
    return f"1Z{serial}{(10 - total % 10) % 10}"


def fedex_number(sequence: int) -> str:
    """FedEx Express 12 digits: 11-digit serial, check = (sum of digit x 3,1,7...) mod 11 mod 10."""
    serial = f"7{sequence % 10**10:010d}"
    total = sum(int(char) * weight for char, weight in zip(serial, _FEDEX_WEIGHTS, strict=True))
    return f"{serial}{total % 11 % 10}"


def usps_number(sequence: int) -> str:
    """USPS IMpb 22 digits (94001 + 9-digit mailer id + 7-digit serial) with the mod-10 check (3,1 from the right)."""
    serial = f"94001{'912345678'}{sequence % 10**7:07d}"
    total = sum(int(char) * (3 if index % 2 == 0 else 1) for index, char in enumerate(reversed(serial)))
    return f"{serial}{(10 - total % 10) % 10}"


def dhl_number(sequence: int) -> str:
    """DHL Express air waybill: 10 digits, the last = the first nine mod 7."""
    serial = f"3{sequence % 10**8:08d}"
    return f"{serial}{int(serial) % 7}"


def s10_number(sequence: int, *, service: str = "RR", country: str = "CN") -> str:
    """UPU S10 (postal parcels tracked through 17TRACK): RR + 8 digits + check + country."""
    serial = f"{sequence % 10**8:08d}"
    remainder = 11 - sum(int(char) * weight for char, weight in zip(serial, _S10_WEIGHTS, strict=True)) % 11
    check = {10: 0, 11: 5}.get(remainder, remainder)
    return f"{service}{serial}{check}{country}"


GENERATORS = {
    "ups": ups_number,
    "fedex": fedex_number,
    "usps": usps_number,
    "dhl": dhl_number,
    "17track": s10_number,
}


def numbers_for(carrier: str, count: int, *, start: int = 1) -> Iterator[str]:
    """`count` distinct valid numbers of one carrier's series."""
    generate = GENERATORS[carrier]
    for sequence in range(start, start + count):
        yield generate(sequence)
