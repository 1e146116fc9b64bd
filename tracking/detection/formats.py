"""OMA's table of tracking-number formats: what each carrier's numbers look like, how their check digit works, and
where a customer can follow them.

Where the rules come from (public facts, re-expressed here in our own table):
- jkeen/tracking_number_data v2.0.0 (https://github.com/jkeen/tracking_number_data, Copyright (c) 2017 Jeff Keen,
  MIT licence; its copyright and permission notice are in NOTICE at the repository root): the courier codes, format
  ids, regular expressions, check-digit parameters and most public tracking URLs. Patterns here are written
  for a number already normalized by `tracking.numbers.normalize()` (upper case, whitespace, hyphens and dots
  removed), so they carry no `\\s*` and no separators (LaserShip's 18-character "...-1" is matched as "...1").
- UPS: "1Z" numbers (6-character shipper number, 2-character service, 7-character package id, mod 10 check digit
  with letters converted as (ASCII - 3) mod 10), from UPS's Developer Kit label guides.
- FedEx: Express 12-digit (weights 3-1-7, mod 11 then mod 10), Ground 15-digit and SSCC-18 (mod 10), 22/34-digit
  Ground "96" barcodes and 34-digit Express barcodes whose last 12 digits are the tracking number.
- USPS: Publication 199 (Intelligent Mail package barcode): 420+ZIP routing prefix, application identifiers 91-95,
  mod 10 check digit (weights 3/1).
- UPU S10 standard (two letters, 8 digits, weighted mod 11 check digit, ISO 3166 issuing country).
- DPD: ISO/IEC 7064 MOD 37,36 check character.
- Public tracking pages: each carrier's own public tracking page (UPS, FedEx, USPS, DHL, Canada Post, Royal Mail) and
  the `tracking_url` entries of tracking_number_data for the others.

`carrier` is the courier code as tracking_number_data names it (ups, fedex, usps, dhl, canada_post, amazon, dpd,
ontrac, lasership, purolator, s10, yodel, yunexpress, landmark, gofo, speedee, old_dominion, canpar).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from tracking.detection.checksums import Checksum, luhn, mod7, mod10, mod_37_36, s10, weighted_sum_mod


@dataclass(frozen=True, slots=True)
class TrackingFormat:
    carrier: str
    format: str  # stable id, e.g. "fedex_12"
    name: str
    pattern: re.Pattern[str]  # full match on the normalised number; groups `serial` and `check` feed the checksum
    checksum: Checksum | None = None
    tracking_url: str = ""  # "{number}" is replaced by the number to track
    # True when the shape is specific to the carrier (a prefix such as 1Z, TBA, LTN...). Plain digit runs without a
    # check digit match many unrelated numbers, so they rank below.
    distinctive: bool = True
    # Prepended to the serial before the checksum when the serial does not start with it (OnTrac "4"/"5",
    # USPS legacy "91"): the check digit was computed over the full barcode data.
    serial_prefix: str = ""
    # The part of the number the carrier's API and web page expect: a group name; None = the whole number.
    tracking_group: str | None = None
    # Extra rule beyond the checksum, on the regex match (e.g. the S10 country must be a UPU member).
    extra_rule: Callable[[re.Match[str]], bool] | None = None
    # Per-number URL when the template depends on the match (S10: the issuing country's post).
    url_for: Callable[[re.Match[str], str], str] | None = field(default=None, repr=False)

    @property
    def has_check_digit(self) -> bool:
        return self.checksum is not None


URL_UPS = "https://www.ups.com/track?tracknum={number}"
URL_FEDEX = "https://www.fedex.com/fedextrack/?trknbr={number}"
URL_USPS = "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}"
URL_DHL = "https://www.dhl.com/global-en/home/tracking/tracking-parcel.html?submit=1&tracking-id={number}"
URL_CANADA_POST = "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor={number}"
URL_ROYAL_MAIL = "https://www.royalmail.com/track-your-item#/tracking-results/{number}"
URL_ONTRAC = "https://www.ontrac.com/tracking/?number={number}"
URL_DPD = "https://www.dpdgroup.com/nl/mydpd/my-parcels/track?lang=en&parcelNumber={number}"
URL_PUROLATOR = "https://www.purolator.com/en/shipping/tracker?searchValue={number}"
URL_OLD_DOMINION = "https://www.odfl.com/us/en/tools/trace-track-ltl-freight/trace.html?proNumbers={number}"
URL_AMAZON = "https://track.amazon.com/tracking/{number}"
# 17TRACK's public page follows any carrier; used where the issuing post has no page we know.
URL_17TRACK = "https://t.17track.net/en#nums={number}"

# UPU member postal administrations' ISO 3166 codes (tracking_number_data s10.json "Courier" lookup, from the UPU
# member list). An S10 number whose last two letters are not here is not a real S10 number.
_UPU_MEMBER_CODES = """
    AE AF AG AL AM AO AR AT AU AZ BA BB BD BE BF BG BH BI BJ BN BO BR BS BT BW BY BZ CA CD CF CG CH CI CL CM CN CO CR
    CU CV CY CZ DE DJ DK DM DO DZ EC EE EG ER ES ET FI FJ FR GA GB GD GE GH GM GN GQ GR GT GW GY HK HN HR HT HU ID IE
    IL IN IQ IR IS IT JM JO JP KE KG KH KI KM KN KP KR KW KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MG MK ML MM
    MN MR MT MU MV MW MX MY MZ NA NE NG NI NL NO NP NR NZ OM PA PE PG PH PK PL PT PY QA RO RS RU RW SA SB SC SD SE SG
    SI SK SL SM SN SO SR SS ST SV SY SZ TD TG TH TJ TL TM TN TO TR TT TV TZ UA UG US UY UZ VA VC VE VN VU WS YE ZA ZM
    ZW
"""
UPU_MEMBER_COUNTRIES: frozenset[str] = frozenset(_UPU_MEMBER_CODES.split())

_S10_POST_URLS = {"US": URL_USPS, "CA": URL_CANADA_POST, "GB": URL_ROYAL_MAIL}


def _s10_country_is_upu_member(match: re.Match[str]) -> bool:
    return match.group("country") in UPU_MEMBER_COUNTRIES


def _s10_url(match: re.Match[str], number: str) -> str:
    return _S10_POST_URLS.get(match.group("country"), URL_17TRACK).format(number=number)


class _FormatOptions(TypedDict, total=False):
    """TrackingFormat's optional fields, as `_fmt` passes them on."""

    checksum: Checksum | None
    tracking_url: str
    distinctive: bool
    serial_prefix: str
    tracking_group: str | None
    extra_rule: Callable[[re.Match[str]], bool] | None
    url_for: Callable[[re.Match[str], str], str] | None


def _fmt(carrier: str, format_id: str, name: str, pattern: str, **options: Unpack[_FormatOptions]) -> TrackingFormat:
    return TrackingFormat(carrier, format_id, name, re.compile(pattern), **options)


_FEDEX_EXPRESS_WEIGHTS = (3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
_FEDEX_34_WEIGHTS = (1, 7, 3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
_USPS_MOD10 = mod10(evens_multiplier=3, odds_multiplier=1)

# Order matters only as the last tie-breaker between candidates of equal confidence and priority.
FORMATS: tuple[TrackingFormat, ...] = (
    # --- UPS -----------------------------------------------------------------------------------------------------
    _fmt(
        "ups", "ups", "UPS",
        r"1Z(?P<serial>[A-Z0-9]{6}(?P<service>[A-Z0-9]{2})[A-Z0-9]{7})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=1, odds_multiplier=2), tracking_url=URL_UPS,
    ),
    _fmt(
        "ups", "ups_waybill", "UPS Waybill",
        r"(?P<service>[AHJKTV])(?P<serial>[0-9]{9})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=1, odds_multiplier=2), tracking_url=URL_UPS,
    ),
    # --- FedEx ---------------------------------------------------------------------------------------------------
    _fmt(
        "fedex", "fedex_12", "FedEx Express (12)",
        r"(?P<serial>[0-9]{11})(?P<check>[0-9])",
        checksum=weighted_sum_mod(weights=_FEDEX_EXPRESS_WEIGHTS, modulo1=11, modulo2=10),
        tracking_url=URL_FEDEX, distinctive=False,
    ),
    _fmt(
        "fedex", "fedex_34", "FedEx Express (34)",
        r"[0-8][0-9]{14}(?P<zip>[0-9]{5})(?P<serial>[0-9]{13})(?P<check>[0-9])(?<=(?P<tracking>[0-9]{12}))",
        checksum=weighted_sum_mod(weights=_FEDEX_34_WEIGHTS, modulo1=11, modulo2=10),
        tracking_url=URL_FEDEX, tracking_group="tracking",
    ),
    _fmt(
        "fedex", "fedex_astra_32", "FedEx ASTRA (32)",
        r"3[0-9]{15}(?P<tracking>(?P<serial>[0-9]{11})(?P<check>[0-9]))[0-9]{4}",
        checksum=weighted_sum_mod(weights=_FEDEX_EXPRESS_WEIGHTS, modulo1=11, modulo2=10),
        tracking_url=URL_FEDEX, tracking_group="tracking",
    ),
    _fmt(
        "fedex", "fedex_ground", "FedEx Ground",
        r"(?P<serial>[0-9]{14})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=1, odds_multiplier=3), tracking_url=URL_FEDEX, distinctive=False,
    ),
    _fmt(
        "fedex", "fedex_ground_sscc_18", "FedEx Ground (SSCC-18)",
        r"(?P<container>[0-9]{2})(?P<serial>[0-9]{15})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=3, odds_multiplier=1), tracking_url=URL_FEDEX, distinctive=False,
    ),
    _fmt(
        "fedex", "fedex_ground_96", "FedEx Ground 96 (22)",
        r"96(?P<scnc>[0-9]{2})(?P<service>[0-9]{3})(?P<tracking>(?P<serial>[0-9]{14})(?P<check>[0-9]))",
        checksum=mod10(evens_multiplier=1, odds_multiplier=3), tracking_url=URL_FEDEX,
        tracking_group="tracking",  # the last 15 digits are the FedEx Ground tracking number
    ),
    _fmt(
        "fedex", "fedex_ground_gsn", "FedEx Ground GSN",
        r"96(?P<scnc>[0-9]{2})[0-9]{5}(?P<gsn>[0-9]{10})[0-9](?P<serial>[0-9]{13})(?P<check>[0-9])"
        r"(?<=(?P<tracking>[0-9]{12}))",
        checksum=weighted_sum_mod(weights=_FEDEX_34_WEIGHTS, modulo1=11, modulo2=10),
        tracking_url=URL_FEDEX, tracking_group="tracking",
    ),
    # --- USPS (Publication 199) -----------------------------------------------------------------------------------
    _fmt(
        "usps", "usps_20", "USPS 20",
        r"(?P<serial>(?P<service>[0-9]{2})[0-9]{9}[0-9]{8})(?P<check>[0-9])",
        checksum=_USPS_MOD10, tracking_url=URL_USPS, distinctive=False,
    ),
    _fmt(
        "usps", "usps_impb_n", "USPS IMpb N",
        r"(?:420(?P<zip>[0-9]{5}(?=[0-9]{22}$|[0-9]{26}$))(?P<zip4>[0-9]{4}(?=[0-9]{22}$))?)?"
        r"(?P<tracking>(?P<serial>94[0-9]{3}"
        r"(?=9[0-9]{8}(?:[0-9]{15}|[0-9]{11}|[0-9]{7})[0-9]$|[0-8][0-9]{5}(?:[0-9]{14}|[0-9]{10})[0-9]$)"
        r"(?:9[0-9]{8}|[0-8][0-9]{5})(?:[0-9]{15}|[0-9]{14}|[0-9]{11}|[0-9]{10}|[0-9]{7}))(?P<check>[0-9]))",
        checksum=mod10(evens_multiplier=3, odds_multiplier=1, reverse=True),
        tracking_url=URL_USPS, tracking_group="tracking",
    ),
    _fmt(
        "usps", "usps_legacy", "USPS Legacy",
        r"(?:420(?P<zip>[0-9]{5})(?P<zip4>[0-9]{4})?)?"
        r"(?P<tracking>(?P<serial>(?:91)?[0-9]{2}[0-9]{9}[0-9]{8})(?P<check>[0-9]))",
        checksum=_USPS_MOD10, tracking_url=URL_USPS, distinctive=False, serial_prefix="91", tracking_group="tracking",
    ),
    _fmt(
        "usps", "usps_impb_c", "USPS IMpb C",
        r"(?:420(?P<zip>[0-9]{5})(?P<zip4>[0-9]{4}(?=[0-9]{22}$))?)?"
        r"(?P<tracking>(?P<serial>(?:92(?=[0-9]{3}9)|93(?=[0-9]{3}[0-8])|95)[0-9]{3}"
        r"(?=9[0-9]{8}(?:[0-9]{11}|[0-9]{7})[0-9]$|[0-8][0-9]{5}(?:[0-9]{14}|[0-9]{10})[0-9]$)"
        r"(?:9[0-9]{8}|[0-8][0-9]{5})(?:[0-9]{14}|[0-9]{11}|[0-9]{10}|[0-9]{7}))(?P<check>[0-9]))",
        checksum=_USPS_MOD10, tracking_url=URL_USPS, tracking_group="tracking",
    ),
    # --- DHL -----------------------------------------------------------------------------------------------------
    _fmt(
        "dhl", "dhl_express", "DHL Express",
        r"(?P<serial>[0-9]{9,10})(?P<check>[0-9])",
        checksum=mod7(), tracking_url=URL_DHL, distinctive=False,
    ),
    _fmt("dhl", "dhl_express_piece_id", "DHL Express (Piece ID)", r"J[A-Z]{2,3}(?P<serial>[0-9]{9,10})",
         tracking_url=URL_DHL),
    _fmt(
        "dhl", "dhl_ecommerce", "DHL eCommerce",
        r"(?:GM|LX|RX|UV|CN|SG|TH|IN|HK|MY)(?P<serial>(?=[0-9A-Z]*[0-9])[0-9A-Z]{10,39})",
        tracking_url=URL_DHL,
    ),
    _fmt("dhl", "dhl_ecommerce_14", "DHL eCommerce (14)", r"(?P<serial>[0-9]{14})", tracking_url=URL_DHL,
         distinctive=False),
    # --- Canada: Canada Post, Purolator, Canpar -------------------------------------------------------------------
    _fmt(
        "canada_post", "canada_post", "Canada Post (16)",
        r"(?P<serial>(?P<origin>[0-9]{7})[0-9]{8})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=3, odds_multiplier=1), tracking_url=URL_CANADA_POST,
        distinctive=False,
    ),
    _fmt(
        "purolator", "purolator_numeric", "Purolator (12)",
        r"(?P<serial>[0-5][0-9]{10})(?P<check>[0-9])",
        checksum=luhn(), tracking_url=URL_PUROLATOR, distinctive=False,
    ),
    _fmt("purolator", "purolator_alpha", "Purolator (alpha + 9)", r"(?P<serial>[A-Z]{3}[0-9]{9})",
         tracking_url=URL_PUROLATOR, distinctive=False),
    _fmt("canpar", "canpar_22", "Canpar (22)", r"(?P<serial>[CDKLSUXZ][0-9]{21})",
         tracking_url="https://www.canpar.com/en/track/tracking.jsp?reference={number}&locale=en"),
    # --- Europe: DPD, Yodel, Landmark ----------------------------------------------------------------------------
    _fmt(
        "dpd", "dpd", "DPD (28)",
        r"(?P<serial>(?P<zip>[0-9]{7})[0-9]{14}(?P<service>[0-9]{3})(?P<country>[0-9]{3}))(?P<check>[0-9A-Z])",
        checksum=mod_37_36(), tracking_url=URL_DPD,
    ),
    _fmt(
        "dpd", "dpd_14", "DPD (14)",
        r"(?P<serial>[0-9]{14})(?P<check>[0-9A-Z])",
        checksum=mod_37_36(), tracking_url=URL_DPD, distinctive=False,
    ),
    _fmt("yodel", "yodel", "Yodel", r"JJ?D(?P<serial>[0-9]{16})", tracking_url="https://www.yodel.co.uk/tracking/{number}"),
    _fmt("landmark", "landmark_global", "Landmark Global LTN", r"LTN(?P<serial>[0-9]{8})N1",
         tracking_url="https://track.landmarkglobal.com/?search={number}"),
    # --- US regional: OnTrac, LaserShip, Spee-Dee, GOFO, Old Dominion, Amazon --------------------------------------
    _fmt(
        "ontrac", "ontrac_c", "OnTrac",
        r"C(?P<serial>[0-9]{13})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=1, odds_multiplier=2), serial_prefix="4", tracking_url=URL_ONTRAC,
    ),
    _fmt(
        "ontrac", "ontrac_d", "OnTrac D",
        r"D(?P<serial>[0-9]{13})(?P<check>[0-9])",
        checksum=mod10(evens_multiplier=1, odds_multiplier=2), serial_prefix="5", tracking_url=URL_ONTRAC,
    ),
    # LaserShip has traded as OnTrac since 2024: its numbers are followed on OnTrac's page.
    _fmt("lasership", "lasership_lx", "LaserShip LX", r"L[AIEHNX][1-3](?P<serial>[0-9]{7})", tracking_url=URL_ONTRAC),
    _fmt("lasership", "lasership_1ls7", "LaserShip 1LS7 (15)", r"1LS7[12][0-9]{4}(?P<serial>[0-9]{6})",
         tracking_url=URL_ONTRAC),
    _fmt("lasership", "lasership_1ls7_18", "LaserShip 1LS7 (18)", r"1LS7[12][0-9]{2}01[1-4](?P<serial>[0-9]{6})1",
         tracking_url=URL_ONTRAC),
    _fmt("lasership", "lasership_1lscx", "LaserShip 1LSCX (15)", r"1LSCX(?P<serial>[0-9A-Z]{10})",
         tracking_url=URL_ONTRAC),
    _fmt("speedee", "speedee", "Spee-Dee (20)", r"SP(?P<serial>[0-9]{18})",
         tracking_url="https://www.speedeedelivery.com/track/?tracking={number}"),
    _fmt("gofo", "gofo_us", "GOFO Express (US)", r"GFUS(?P<serial>[0-9]{14})",
         tracking_url="https://www.gofoexpress.com/tracking.html?searchID={number}"),
    _fmt(
        "old_dominion", "old_dominion", "Old Dominion",
        r"(?P<serial>(?:77[78]|072|780)[0-9]{7})(?P<check>[0-9])",
        checksum=luhn(), tracking_url=URL_OLD_DOMINION,
    ),
    _fmt(
        "old_dominion", "old_dominion_guaranteed", "Old Dominion Guaranteed Shipment",
        r"(?P<serial>80[0-9]{8})(?P<check>[0-9])",
        checksum=luhn(), tracking_url=URL_OLD_DOMINION,
    ),
    _fmt("amazon", "amazon_logistics", "Amazon Logistics", r"TB[ACM](?P<serial>[0-9]{12})", tracking_url=URL_AMAZON),
    _fmt("amazon", "amazon_international", "Amazon International", r"[AFC](?P<serial>[0-9]{10})",
         tracking_url=URL_AMAZON),
    # --- Asia: YunExpress ----------------------------------------------------------------------------------------
    _fmt("yunexpress", "yunexpress", "YunExpress", r"YT(?P<serial>[0-9]{16})",
         tracking_url="https://www.yuntrack.com/parcelTracking?id={number}"),
    # --- UPU S10 (every postal service's international items) ----------------------------------------------------
    _fmt(
        "s10", "s10", "S10 (UPU international)",
        r"(?P<service>[A-Z]{2})(?P<serial>[0-9]{8})(?P<check>[0-9])(?P<country>[A-Z]{2})",
        checksum=s10(), extra_rule=_s10_country_is_upu_member, url_for=_s10_url,
    ),
)

FORMATS_BY_ID: dict[str, TrackingFormat] = {fmt.format: fmt for fmt in FORMATS}
CARRIER_CODES: tuple[str, ...] = tuple(dict.fromkeys(fmt.carrier for fmt in FORMATS))
