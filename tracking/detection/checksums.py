"""Check-digit algorithms used by carrier tracking numbers.

Each builder returns a `Checksum`: a function `(serial, check_digit) -> bool`. The algorithms and their parameters
are the public rules documented in jkeen/tracking_number_data's CHECKSUM_ALGORITHMS.md (MIT) and in the carriers'
own label specifications (UPS 1Z, FedEx Express/Ground, USPS Publication 199 IMpb, UPU S10, ISO/IEC 7064 for DPD).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Checksum = Callable[[str, str], bool]

_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _char_value(char: str) -> int:
    """Digits are themselves; letters follow UPS's 1Z convention ((ASCII - 3) mod 10: A=2 ... H=9, I=0, J=1 ...)."""
    if char.isdigit():
        return int(char)
    return (ord(char) - 3) % 10


def mod10(*, evens_multiplier: int, odds_multiplier: int, reverse: bool = False) -> Checksum:
    """Weighted mod 10: positions 0, 2, 4... (or 1, 3, 5...) of the serial are multiplied, summed, and the check
    digit brings the sum to a multiple of 10. `reverse` weighs from the right-hand end (USPS IMpb N)."""

    def check(serial: str, check_digit: str) -> bool:
        if not check_digit.isdigit():
            return False
        chars = serial[::-1] if reverse else serial
        total = 0
        for index, char in enumerate(chars):
            total += _char_value(char) * (odds_multiplier if index % 2 else evens_multiplier)
        return (10 - total % 10) % 10 == int(check_digit)

    return check


def mod7() -> Checksum:
    """DHL Express air waybills: the serial read as an integer, modulo 7."""

    def check(serial: str, check_digit: str) -> bool:
        return serial.isdigit() and check_digit.isdigit() and int(serial) % 7 == int(check_digit)

    return check


def luhn() -> Checksum:
    """Luhn (ISO/IEC 7812): double every second digit from the right of the serial."""

    def check(serial: str, check_digit: str) -> bool:
        if not (serial.isdigit() and check_digit.isdigit()):
            return False
        total = 0
        for index, char in enumerate(reversed(serial)):
            value = int(char) * (2 if index % 2 == 0 else 1)
            total += value - 9 if value > 9 else value
        return (10 - total % 10) % 10 == int(check_digit)

    return check


def s10(*, weights: Sequence[int] = (8, 6, 4, 2, 3, 5, 9, 7)) -> Checksum:
    """UPU S10: weights 8 6 4 2 3 5 9 7 over the 8 serial digits; 11 - (sum mod 11), where 10 -> 0 and 11 -> 5."""

    def check(serial: str, check_digit: str) -> bool:
        if not (serial.isdigit() and check_digit.isdigit()) or len(serial) != len(weights):
            return False
        remainder = 11 - sum(int(char) * weight for char, weight in zip(serial, weights, strict=True)) % 11
        expected = {10: 0, 11: 5}.get(remainder, remainder)
        return expected == int(check_digit)

    return check


def mod_37_36() -> Checksum:
    """ISO/IEC 7064 hybrid MOD 37,36 over digits and letters (DPD parcel numbers); the check is a digit or letter."""

    def check(serial: str, check_digit: str) -> bool:
        modulus = 36
        product = modulus
        for char in serial:
            value = _ALPHANUMERIC.find(char)
            if value < 0:
                return False
            product = (product + value) % modulus or modulus
            product = (product * 2) % (modulus + 1)
        expected = (modulus + 1 - product) % modulus
        return _ALPHANUMERIC[expected] == check_digit

    return check


def weighted_sum_mod(*, weights: Sequence[int], modulo1: int, modulo2: int) -> Checksum:
    """FedEx Express: sum of digit x weight, then mod 11, then mod 10 (so a remainder of 10 gives check digit 0)."""

    def check(serial: str, check_digit: str) -> bool:
        if not (serial.isdigit() and check_digit.isdigit()) or len(serial) != len(weights):
            return False
        total = sum(int(char) * weight for char, weight in zip(serial, weights, strict=True))
        return total % modulo1 % modulo2 == int(check_digit)

    return check
