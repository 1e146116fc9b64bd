"""Code tables for the values channels spell out: countries (ISO 3166-1), US, Canadian and Australian provinces
(ISO 3166-2) and currencies (ISO 4217).

Marketplace reports write "United States" or "Korea, South" where Genstore wants "US" and "KR"; `country_code`
turns any of an ISO code (alpha-2 or alpha-3), an ISO name, its official or common name, or a usual alias into the
alpha-2 code, and `province_code` does the same for the subdivisions whose codes merchants' carriers expect.
Names are compared without case, accents, punctuation or a leading or trailing "the" ("St." is "Saint"). The
tables come from the iso-codes project (4.15), with aliases added for what eBay and Amazon reports write.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# (alpha-2, alpha-3, "ISO name|official name|common name")
_COUNTRIES: tuple[tuple[str, str, str], ...] = (
    ("AD", "AND", "Andorra|Principality of Andorra"),
    ("AE", "ARE", "United Arab Emirates"),
    ("AF", "AFG", "Afghanistan|Islamic Republic of Afghanistan"),
    ("AG", "ATG", "Antigua and Barbuda"),
    ("AI", "AIA", "Anguilla"),
    ("AL", "ALB", "Albania|Republic of Albania"),
    ("AM", "ARM", "Armenia|Republic of Armenia"),
    ("AO", "AGO", "Angola|Republic of Angola"),
    ("AQ", "ATA", "Antarctica"),
    ("AR", "ARG", "Argentina|Argentine Republic"),
    ("AS", "ASM", "American Samoa"),
    ("AT", "AUT", "Austria|Republic of Austria"),
    ("AU", "AUS", "Australia"),
    ("AW", "ABW", "Aruba"),
    ("AX", "ALA", "Åland Islands"),
    ("AZ", "AZE", "Azerbaijan|Republic of Azerbaijan"),
    ("BA", "BIH", "Bosnia and Herzegovina|Republic of Bosnia and Herzegovina"),
    ("BB", "BRB", "Barbados"),
    ("BD", "BGD", "Bangladesh|People's Republic of Bangladesh"),
    ("BE", "BEL", "Belgium|Kingdom of Belgium"),
    ("BF", "BFA", "Burkina Faso"),
    ("BG", "BGR", "Bulgaria|Republic of Bulgaria"),
    ("BH", "BHR", "Bahrain|Kingdom of Bahrain"),
    ("BI", "BDI", "Burundi|Republic of Burundi"),
    ("BJ", "BEN", "Benin|Republic of Benin"),
    ("BL", "BLM", "Saint Barthélemy"),
    ("BM", "BMU", "Bermuda"),
    ("BN", "BRN", "Brunei Darussalam"),
    ("BO", "BOL", "Bolivia, Plurinational State of|Plurinational State of Bolivia|Bolivia"),
    ("BQ", "BES", "Bonaire, Sint Eustatius and Saba"),
    ("BR", "BRA", "Brazil|Federative Republic of Brazil"),
    ("BS", "BHS", "Bahamas|Commonwealth of the Bahamas"),
    ("BT", "BTN", "Bhutan|Kingdom of Bhutan"),
    ("BV", "BVT", "Bouvet Island"),
    ("BW", "BWA", "Botswana|Republic of Botswana"),
    ("BY", "BLR", "Belarus|Republic of Belarus"),
    ("BZ", "BLZ", "Belize"),
    ("CA", "CAN", "Canada"),
    ("CC", "CCK", "Cocos (Keeling) Islands"),
    ("CD", "COD", "Congo, The Democratic Republic of the"),
    ("CF", "CAF", "Central African Republic"),
    ("CG", "COG", "Congo|Republic of the Congo"),
    ("CH", "CHE", "Switzerland|Swiss Confederation"),
    ("CI", "CIV", "Côte d'Ivoire|Republic of Côte d'Ivoire"),
    ("CK", "COK", "Cook Islands"),
    ("CL", "CHL", "Chile|Republic of Chile"),
    ("CM", "CMR", "Cameroon|Republic of Cameroon"),
    ("CN", "CHN", "China|People's Republic of China"),
    ("CO", "COL", "Colombia|Republic of Colombia"),
    ("CR", "CRI", "Costa Rica|Republic of Costa Rica"),
    ("CU", "CUB", "Cuba|Republic of Cuba"),
    ("CV", "CPV", "Cabo Verde|Republic of Cabo Verde"),
    ("CW", "CUW", "Curaçao"),
    ("CX", "CXR", "Christmas Island"),
    ("CY", "CYP", "Cyprus|Republic of Cyprus"),
    ("CZ", "CZE", "Czechia|Czech Republic"),
    ("DE", "DEU", "Germany|Federal Republic of Germany"),
    ("DJ", "DJI", "Djibouti|Republic of Djibouti"),
    ("DK", "DNK", "Denmark|Kingdom of Denmark"),
    ("DM", "DMA", "Dominica|Commonwealth of Dominica"),
    ("DO", "DOM", "Dominican Republic"),
    ("DZ", "DZA", "Algeria|People's Democratic Republic of Algeria"),
    ("EC", "ECU", "Ecuador|Republic of Ecuador"),
    ("EE", "EST", "Estonia|Republic of Estonia"),
    ("EG", "EGY", "Egypt|Arab Republic of Egypt"),
    ("EH", "ESH", "Western Sahara"),
    ("ER", "ERI", "Eritrea|the State of Eritrea"),
    ("ES", "ESP", "Spain|Kingdom of Spain"),
    ("ET", "ETH", "Ethiopia|Federal Democratic Republic of Ethiopia"),
    ("FI", "FIN", "Finland|Republic of Finland"),
    ("FJ", "FJI", "Fiji|Republic of Fiji"),
    ("FK", "FLK", "Falkland Islands (Malvinas)"),
    ("FM", "FSM", "Micronesia, Federated States of|Federated States of Micronesia"),
    ("FO", "FRO", "Faroe Islands"),
    ("FR", "FRA", "France|French Republic"),
    ("GA", "GAB", "Gabon|Gabonese Republic"),
    ("GB", "GBR", "United Kingdom|United Kingdom of Great Britain and Northern Ireland"),
    ("GD", "GRD", "Grenada"),
    ("GE", "GEO", "Georgia"),
    ("GF", "GUF", "French Guiana"),
    ("GG", "GGY", "Guernsey"),
    ("GH", "GHA", "Ghana|Republic of Ghana"),
    ("GI", "GIB", "Gibraltar"),
    ("GL", "GRL", "Greenland"),
    ("GM", "GMB", "Gambia|Republic of the Gambia"),
    ("GN", "GIN", "Guinea|Republic of Guinea"),
    ("GP", "GLP", "Guadeloupe"),
    ("GQ", "GNQ", "Equatorial Guinea|Republic of Equatorial Guinea"),
    ("GR", "GRC", "Greece|Hellenic Republic"),
    ("GS", "SGS", "South Georgia and the South Sandwich Islands"),
    ("GT", "GTM", "Guatemala|Republic of Guatemala"),
    ("GU", "GUM", "Guam"),
    ("GW", "GNB", "Guinea-Bissau|Republic of Guinea-Bissau"),
    ("GY", "GUY", "Guyana|Republic of Guyana"),
    ("HK", "HKG", "Hong Kong|Hong Kong Special Administrative Region of China"),
    ("HM", "HMD", "Heard Island and McDonald Islands"),
    ("HN", "HND", "Honduras|Republic of Honduras"),
    ("HR", "HRV", "Croatia|Republic of Croatia"),
    ("HT", "HTI", "Haiti|Republic of Haiti"),
    ("HU", "HUN", "Hungary"),
    ("ID", "IDN", "Indonesia|Republic of Indonesia"),
    ("IE", "IRL", "Ireland"),
    ("IL", "ISR", "Israel|State of Israel"),
    ("IM", "IMN", "Isle of Man"),
    ("IN", "IND", "India|Republic of India"),
    ("IO", "IOT", "British Indian Ocean Territory"),
    ("IQ", "IRQ", "Iraq|Republic of Iraq"),
    ("IR", "IRN", "Iran, Islamic Republic of|Islamic Republic of Iran|Iran"),
    ("IS", "ISL", "Iceland|Republic of Iceland"),
    ("IT", "ITA", "Italy|Italian Republic"),
    ("JE", "JEY", "Jersey"),
    ("JM", "JAM", "Jamaica"),
    ("JO", "JOR", "Jordan|Hashemite Kingdom of Jordan"),
    ("JP", "JPN", "Japan"),
    ("KE", "KEN", "Kenya|Republic of Kenya"),
    ("KG", "KGZ", "Kyrgyzstan|Kyrgyz Republic"),
    ("KH", "KHM", "Cambodia|Kingdom of Cambodia"),
    ("KI", "KIR", "Kiribati|Republic of Kiribati"),
    ("KM", "COM", "Comoros|Union of the Comoros"),
    ("KN", "KNA", "Saint Kitts and Nevis"),
    ("KP", "PRK", "Korea, Democratic People's Republic of|Democratic People's Republic of Korea|North Korea"),
    ("KR", "KOR", "Korea, Republic of|South Korea"),
    ("KW", "KWT", "Kuwait|State of Kuwait"),
    ("KY", "CYM", "Cayman Islands"),
    ("KZ", "KAZ", "Kazakhstan|Republic of Kazakhstan"),
    ("LA", "LAO", "Lao People's Democratic Republic|Laos"),
    ("LB", "LBN", "Lebanon|Lebanese Republic"),
    ("LC", "LCA", "Saint Lucia"),
    ("LI", "LIE", "Liechtenstein|Principality of Liechtenstein"),
    ("LK", "LKA", "Sri Lanka|Democratic Socialist Republic of Sri Lanka"),
    ("LR", "LBR", "Liberia|Republic of Liberia"),
    ("LS", "LSO", "Lesotho|Kingdom of Lesotho"),
    ("LT", "LTU", "Lithuania|Republic of Lithuania"),
    ("LU", "LUX", "Luxembourg|Grand Duchy of Luxembourg"),
    ("LV", "LVA", "Latvia|Republic of Latvia"),
    ("LY", "LBY", "Libya"),
    ("MA", "MAR", "Morocco|Kingdom of Morocco"),
    ("MC", "MCO", "Monaco|Principality of Monaco"),
    ("MD", "MDA", "Moldova, Republic of|Republic of Moldova|Moldova"),
    ("ME", "MNE", "Montenegro"),
    ("MF", "MAF", "Saint Martin (French part)"),
    ("MG", "MDG", "Madagascar|Republic of Madagascar"),
    ("MH", "MHL", "Marshall Islands|Republic of the Marshall Islands"),
    ("MK", "MKD", "North Macedonia|Republic of North Macedonia"),
    ("ML", "MLI", "Mali|Republic of Mali"),
    ("MM", "MMR", "Myanmar|Republic of Myanmar"),
    ("MN", "MNG", "Mongolia"),
    ("MO", "MAC", "Macao|Macao Special Administrative Region of China"),
    ("MP", "MNP", "Northern Mariana Islands|Commonwealth of the Northern Mariana Islands"),
    ("MQ", "MTQ", "Martinique"),
    ("MR", "MRT", "Mauritania|Islamic Republic of Mauritania"),
    ("MS", "MSR", "Montserrat"),
    ("MT", "MLT", "Malta|Republic of Malta"),
    ("MU", "MUS", "Mauritius|Republic of Mauritius"),
    ("MV", "MDV", "Maldives|Republic of Maldives"),
    ("MW", "MWI", "Malawi|Republic of Malawi"),
    ("MX", "MEX", "Mexico|United Mexican States"),
    ("MY", "MYS", "Malaysia"),
    ("MZ", "MOZ", "Mozambique|Republic of Mozambique"),
    ("NA", "NAM", "Namibia|Republic of Namibia"),
    ("NC", "NCL", "New Caledonia"),
    ("NE", "NER", "Niger|Republic of the Niger"),
    ("NF", "NFK", "Norfolk Island"),
    ("NG", "NGA", "Nigeria|Federal Republic of Nigeria"),
    ("NI", "NIC", "Nicaragua|Republic of Nicaragua"),
    ("NL", "NLD", "Netherlands|Kingdom of the Netherlands"),
    ("NO", "NOR", "Norway|Kingdom of Norway"),
    ("NP", "NPL", "Nepal|Federal Democratic Republic of Nepal"),
    ("NR", "NRU", "Nauru|Republic of Nauru"),
    ("NU", "NIU", "Niue"),
    ("NZ", "NZL", "New Zealand"),
    ("OM", "OMN", "Oman|Sultanate of Oman"),
    ("PA", "PAN", "Panama|Republic of Panama"),
    ("PE", "PER", "Peru|Republic of Peru"),
    ("PF", "PYF", "French Polynesia"),
    ("PG", "PNG", "Papua New Guinea|Independent State of Papua New Guinea"),
    ("PH", "PHL", "Philippines|Republic of the Philippines"),
    ("PK", "PAK", "Pakistan|Islamic Republic of Pakistan"),
    ("PL", "POL", "Poland|Republic of Poland"),
    ("PM", "SPM", "Saint Pierre and Miquelon"),
    ("PN", "PCN", "Pitcairn"),
    ("PR", "PRI", "Puerto Rico"),
    ("PS", "PSE", "Palestine, State of|the State of Palestine"),
    ("PT", "PRT", "Portugal|Portuguese Republic"),
    ("PW", "PLW", "Palau|Republic of Palau"),
    ("PY", "PRY", "Paraguay|Republic of Paraguay"),
    ("QA", "QAT", "Qatar|State of Qatar"),
    ("RE", "REU", "Réunion"),
    ("RO", "ROU", "Romania"),
    ("RS", "SRB", "Serbia|Republic of Serbia"),
    ("RU", "RUS", "Russian Federation"),
    ("RW", "RWA", "Rwanda|Rwandese Republic"),
    ("SA", "SAU", "Saudi Arabia|Kingdom of Saudi Arabia"),
    ("SB", "SLB", "Solomon Islands"),
    ("SC", "SYC", "Seychelles|Republic of Seychelles"),
    ("SD", "SDN", "Sudan|Republic of the Sudan"),
    ("SE", "SWE", "Sweden|Kingdom of Sweden"),
    ("SG", "SGP", "Singapore|Republic of Singapore"),
    ("SH", "SHN", "Saint Helena, Ascension and Tristan da Cunha"),
    ("SI", "SVN", "Slovenia|Republic of Slovenia"),
    ("SJ", "SJM", "Svalbard and Jan Mayen"),
    ("SK", "SVK", "Slovakia|Slovak Republic"),
    ("SL", "SLE", "Sierra Leone|Republic of Sierra Leone"),
    ("SM", "SMR", "San Marino|Republic of San Marino"),
    ("SN", "SEN", "Senegal|Republic of Senegal"),
    ("SO", "SOM", "Somalia|Federal Republic of Somalia"),
    ("SR", "SUR", "Suriname|Republic of Suriname"),
    ("SS", "SSD", "South Sudan|Republic of South Sudan"),
    ("ST", "STP", "Sao Tome and Principe|Democratic Republic of Sao Tome and Principe"),
    ("SV", "SLV", "El Salvador|Republic of El Salvador"),
    ("SX", "SXM", "Sint Maarten (Dutch part)"),
    ("SY", "SYR", "Syrian Arab Republic|Syria"),
    ("SZ", "SWZ", "Eswatini|Kingdom of Eswatini"),
    ("TC", "TCA", "Turks and Caicos Islands"),
    ("TD", "TCD", "Chad|Republic of Chad"),
    ("TF", "ATF", "French Southern Territories"),
    ("TG", "TGO", "Togo|Togolese Republic"),
    ("TH", "THA", "Thailand|Kingdom of Thailand"),
    ("TJ", "TJK", "Tajikistan|Republic of Tajikistan"),
    ("TK", "TKL", "Tokelau"),
    ("TL", "TLS", "Timor-Leste|Democratic Republic of Timor-Leste"),
    ("TM", "TKM", "Turkmenistan"),
    ("TN", "TUN", "Tunisia|Republic of Tunisia"),
    ("TO", "TON", "Tonga|Kingdom of Tonga"),
    ("TR", "TUR", "Türkiye|Republic of Türkiye"),
    ("TT", "TTO", "Trinidad and Tobago|Republic of Trinidad and Tobago"),
    ("TV", "TUV", "Tuvalu"),
    ("TW", "TWN", "Taiwan, Province of China|Taiwan"),
    ("TZ", "TZA", "Tanzania, United Republic of|United Republic of Tanzania|Tanzania"),
    ("UA", "UKR", "Ukraine"),
    ("UG", "UGA", "Uganda|Republic of Uganda"),
    ("UM", "UMI", "United States Minor Outlying Islands"),
    ("US", "USA", "United States|United States of America"),
    ("UY", "URY", "Uruguay|Eastern Republic of Uruguay"),
    ("UZ", "UZB", "Uzbekistan|Republic of Uzbekistan"),
    ("VA", "VAT", "Holy See (Vatican City State)"),
    ("VC", "VCT", "Saint Vincent and the Grenadines"),
    ("VE", "VEN", "Venezuela, Bolivarian Republic of|Bolivarian Republic of Venezuela|Venezuela"),
    ("VG", "VGB", "Virgin Islands, British|British Virgin Islands"),
    ("VI", "VIR", "Virgin Islands, U.S.|Virgin Islands of the United States"),
    ("VN", "VNM", "Viet Nam|Socialist Republic of Viet Nam|Vietnam"),
    ("VU", "VUT", "Vanuatu|Republic of Vanuatu"),
    ("WF", "WLF", "Wallis and Futuna"),
    ("WS", "WSM", "Samoa|Independent State of Samoa"),
    ("YE", "YEM", "Yemen|Republic of Yemen"),
    ("YT", "MYT", "Mayotte"),
    ("ZA", "ZAF", "South Africa|Republic of South Africa"),
    ("ZM", "ZMB", "Zambia|Republic of Zambia"),
    ("ZW", "ZWE", "Zimbabwe|Republic of Zimbabwe"),
)

# What people and marketplace reports write besides the ISO names (eBay: "Korea, South", "APO/FPO", ...).
_COUNTRY_ALIASES: dict[str, str] = {
    "USA": "US", "U.S.A.": "US", "U.S.": "US", "America": "US", "United States of America": "US",
    "APO/FPO": "US", "US Virgin Islands": "VI", "Virgin Islands (U.S.)": "VI", "Virgin Islands (British)": "VG",
    "UK": "GB", "U.K.": "GB", "Great Britain": "GB", "Britain": "GB", "England": "GB", "Scotland": "GB",
    "Wales": "GB", "Northern Ireland": "GB", "Channel Islands": "GB",
    "Korea, South": "KR", "Republic of Korea": "KR", "Korea, North": "KP", "Russia": "RU", "Turkey": "TR",
    "Macedonia": "MK", "Swaziland": "SZ", "Ivory Coast": "CI", "Cape Verde": "CV", "Holland": "NL", "Burma": "MM",
    "Macau": "MO", "Vatican City": "VA", "Vatican": "VA", "Holy See": "VA", "Brunei": "BN", "East Timor": "TL",
    "Democratic Republic of the Congo": "CD", "Congo, Democratic Republic of the": "CD", "DR Congo": "CD",
    "Congo, Republic of the": "CG", "Saint Kitts-Nevis": "KN", "Bosnia-Herzegovina": "BA", "UAE": "AE",
    "Slovak Republic": "SK", "Kyrgyz Republic": "KG", "Republic of Ireland": "IE", "Eire": "IE",
    "Czech Republic": "CZ", "Reunion Island": "RE", "Palestinian Territories": "PS", "Taiwan ROC": "TW",
}

# Subdivisions whose codes carriers and Genstore expect (ISO 3166-2 without the country prefix).
_PROVINCES: dict[str, dict[str, str]] = {
    "US": {
        "AK": "Alaska", "AL": "Alabama", "AR": "Arkansas", "AS": "American Samoa", "AZ": "Arizona",
        "CA": "California", "CO": "Colorado", "CT": "Connecticut", "DC": "District of Columbia", "DE": "Delaware",
        "FL": "Florida", "GA": "Georgia", "GU": "Guam", "HI": "Hawaii", "IA": "Iowa", "ID": "Idaho",
        "IL": "Illinois", "IN": "Indiana", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
        "MA": "Massachusetts", "MD": "Maryland", "ME": "Maine", "MI": "Michigan", "MN": "Minnesota",
        "MO": "Missouri", "MP": "Northern Mariana Islands", "MS": "Mississippi", "MT": "Montana",
        "NC": "North Carolina", "ND": "North Dakota", "NE": "Nebraska", "NH": "New Hampshire", "NJ": "New Jersey",
        "NM": "New Mexico", "NV": "Nevada", "NY": "New York", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
        "PA": "Pennsylvania", "PR": "Puerto Rico", "RI": "Rhode Island", "SC": "South Carolina",
        "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UM": "United States Minor Outlying Islands",
        "UT": "Utah", "VA": "Virginia", "VI": "Virgin Islands", "VT": "Vermont", "WA": "Washington",
        "WI": "Wisconsin", "WV": "West Virginia", "WY": "Wyoming",
        # US military post (not ISO 3166-2, but what USPS and every US address form use)
        "AA": "Armed Forces Americas", "AE": "Armed Forces Europe", "AP": "Armed Forces Pacific",
    },
    "CA": {
        "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
        "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories", "NU": "Nunavut",
        "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec", "SK": "Saskatchewan", "YT": "Yukon",
    },
    "AU": {
        "ACT": "Australian Capital Territory", "NSW": "New South Wales", "NT": "Northern Territory",
        "QLD": "Queensland", "SA": "South Australia", "TAS": "Tasmania", "VIC": "Victoria", "WA": "Western Australia",
    },
}
_PROVINCE_ALIASES: dict[str, dict[str, str]] = {
    "US": {"Washington DC": "DC", "Washington D.C.": "DC", "US Virgin Islands": "VI"},
    "CA": {"Newfoundland": "NL", "Quebec City": "QC", "Yukon Territory": "YT", "PEI": "PE"},
    "AU": {},
}

# ISO 4217 codes a shop can sell in (funds, precious metals and test codes left out); XCG and ZWG are newer
# than the table they come from.
CURRENCY_CODES: frozenset[str] = frozenset((
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC",
    "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
    "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR",
    "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR",
    "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD",
    "UYU", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
))

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_APOSTROPHES = re.compile("['\u2019`]")  # "Cote d'Ivoire", "Côte d’Ivoire": one word each


def name_key(name: str) -> str:
    """How names are compared: no case, accents, punctuation or "the"; "&" is "and", "St" is "Saint"."""
    decomposed = unicodedata.normalize("NFKD", name.replace("&", " and "))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    words = _NOT_ALNUM.sub(" ", _APOSTROPHES.sub("", plain)).split()
    words = ["saint" if word == "st" else word for word in words]
    if words[:1] == ["the"]:
        words = words[1:]
    if words[-1:] == ["the"]:  # "Bahamas, The"
        words = words[:-1]
    return " ".join(words)


def _short_forms(name: str) -> list[str]:
    """ "Korea, Republic of" -> "Korea"; "Sint Maarten (Dutch part)" -> "Sint Maarten" (if unambiguous)."""
    forms = []
    for separator in (",", "("):
        head = name.split(separator, 1)[0].strip()
        if head and head != name:
            forms.append(head)
    return forms


def _country_table() -> tuple[dict[str, str], dict[str, str]]:
    alpha3 = {three: two for two, three, _ in _COUNTRIES}
    by_name: dict[str, str] = {}
    short: dict[str, set[str]] = {}
    for code, _, names in _COUNTRIES:
        for name in names.split("|"):
            by_name.setdefault(name_key(name), code)
            for form in _short_forms(name):
                short.setdefault(name_key(form), set()).add(code)
    for key, codes in short.items():
        if len(codes) == 1 and key not in by_name:  # "Korea", "Virgin Islands", "Congo": two countries, no guess
            by_name[key] = codes.pop()
    for alias, code in _COUNTRY_ALIASES.items():
        by_name[name_key(alias)] = code
    return alpha3, by_name


_ALPHA2 = frozenset(code for code, _, _ in _COUNTRIES)
_ALPHA3, _COUNTRY_BY_NAME = _country_table()
_PROVINCE_BY_NAME: dict[str, dict[str, str]] = {
    country: {
        **{name_key(name): code for code, name in provinces.items()},
        **{name_key(alias): code for alias, code in _PROVINCE_ALIASES[country].items()},
    }
    for country, provinces in _PROVINCES.items()
}


@lru_cache(maxsize=4096)  # a file repeats the same few countries on every row
def country_code(value: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country given by code or name; "" for blank; None when unknown."""
    text = (value or "").strip()
    if not text:
        return ""
    upper = text.upper()
    if upper in _ALPHA2:
        return upper
    if upper in _ALPHA3:
        return _ALPHA3[upper]
    return _COUNTRY_BY_NAME.get(name_key(text))


@lru_cache(maxsize=4096)
def province_code(value: str, *, country: str) -> str:
    """A US state's, Canadian province's or Australian state's code from its code or name ("New York" -> "NY").

    Anything else (another country's region, a name we do not know) is kept as written: Genstore and the
    carriers take free text there, and refusing an order over it would help nobody.
    """
    text = (value or "").strip()
    provinces = _PROVINCES.get(country)
    if not text or provinces is None:
        return text
    if text.upper() in provinces:
        return text.upper()
    return _PROVINCE_BY_NAME[country].get(name_key(text), text)
