"""Street addresses, where a pattern can tell: US-style and Chinese.

US: a house number, capitalised street words and a common street suffix (Street, Ave, Rd, ...),
or the same words followed by a city, a state code and a ZIP code; a compass point (N, NW, ...)
before or after the street, an optional unit (Apt., Suite, Unit, #) and the city/state/ZIP tail
belong to the span; a city, state code and ZIP code alone (Springfield, IL 62704) are one too. Chinese: a province-level name (or a
city ending in 市), then within a few characters a road (路, 街, 大道, 巷, 胡同) and a number or
building (号, 座, 栋, 幢, 楼, 室), and an optional six-digit postcode.

The suffix, state and province lists are written here from public standards (USPS, the 50
states and territories, GB/T 2260's province-level names), not taken from any generator.
A lower score (0.5) than the checksummed entities: military and PO-box addresses, and
addresses without a street word, are missed.
"""

from __future__ import annotations

import re

__all__ = ["find_addresses", "province_head", "KEEP_WORDS", "KEEP_CJK"]

_A = re.ASCII
_SUFFIX = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|"
    "Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Loop|Alley|Plaza|Crescent|Close|Row|Walk|Expressway|Freeway|Turnpike"
)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|"
    "RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC|PR|VI|GU|AS|MP|MH|FM|PW"
)
_UNIT = r"(?:,? (?:Apt\.?|Suite|Ste\.?|Unit|#) ?[0-9A-Za-z-]{1,6})?"
_DIRECTIONS = "NE|NW|SE|SW|N|S|E|W"
_DIR = rf"(?: (?:{_DIRECTIONS})\.?(?![A-Za-z]))?"  # a compass point before or after the street name: 1600 Pennsylvania Ave NW
_CITY = r"[A-Z][a-z]+(?:-[A-Z][a-z]+)?(?: [A-Z][a-z]+(?:-[A-Z][a-z]+)?){0,2}"
_CITY_STATE_ZIP = rf"{_CITY}, (?:{_STATES}) [0-9]{{5}}(?:-[0-9]{{4}})?(?![0-9])"
_TAIL = rf"(?:,?[ \n]+{_CITY_STATE_ZIP})"
_US = re.compile(
    rf"(?<![0-9A-Za-z])(?:[0-9]{{1,6}}{_DIR}(?:(?: [A-Z][a-z]+){{0,3}} (?:{_SUFFIX})\.?(?![A-Za-z]){_DIR}{_UNIT}{_TAIL}?"
    rf"|(?: [A-Z][a-z]+){{1,4}}{_DIR}{_UNIT}{_TAIL})|{_CITY_STATE_ZIP})",
    _A,
)
# USPS military mail: PSC/Unit and Box numbers, or a ship, then APO/FPO/DPO, AA/AE/AP and a ZIP code.
_MILITARY = re.compile(
    r"(?<![0-9A-Za-z])(?:PSC [0-9]{4}, Box [0-9]{4}|Unit [0-9]{4},? Box [0-9]{4}|US[A-Z]{1,4} [A-Z][a-z]+)[,]?[ \n]+[ADF]PO A[AEP] [0-9]{5}(?![0-9])",
    _A,
)
_PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|贵州|云南|陕西|甘肃|"
    "青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
_CN = re.compile(
    rf"(?:(?:{_PROVINCES})(?:省|市|自治区|特别行政区|壮族自治区|回族自治区|维吾尔自治区)?|[\u4e00-\u9fff]{{2,4}}市)"
    r"[\u4e00-\u9fff]{0,14}?(?:路|街|大道|巷|胡同)[\u4e00-\u9fff0-9]{0,6}?(?:[0-9]{1,5}|[A-Za-z])(?:号|座|栋|幢|号楼|楼|室)"
    r"(?:[0-9]{1,5}(?:室|号))?(?: ?[0-9]{6}(?![0-9]))?"
)


# What a fake address keeps, so it still reads (and is found again) as an address: the structural
# words and characters, wherever they are, and the province-level name a Chinese address begins
# with (as a US one keeps its state code). Street, district and city names are not kept: a CJK
# character that is not structural is permuted among the others that are not, so a fake never
# gains a structural character (and `unmask` keeps exactly what the fake kept).
KEEP_WORDS = frozenset(
    _SUFFIX.split("|")
    + _STATES.split("|")
    + _DIRECTIONS.split("|")
    + ["Apt", "Suite", "Ste", "Unit", "PSC", "Box", "APO", "FPO", "DPO", "AA", "AE", "AP"]
)
KEEP_CJK = frozenset("省市县区镇乡村路街道巷弄号座栋幢楼室大胡同")
_PROVINCE_HEAD = re.compile(rf"\s*(?:{_PROVINCES})(?:省|市|特别行政区|壮族自治区|回族自治区|维吾尔自治区|自治区)?")


def province_head(text: str) -> int:
    """The length of the province-level name (and its 省, 市, 自治区, ...) that `text` begins with; 0 if none."""
    m = _PROVINCE_HEAD.match(text)
    return m.end() if m is not None else 0


_HAS_DIGIT = re.compile("[0-9]")


def find_addresses(text: str, types: frozenset[str] | None) -> list[tuple[str, int, int, float]]:
    """ADDRESS spans in `text`."""
    if types is not None and "ADDRESS" not in types:
        return []
    found = []
    if _HAS_DIGIT.search(text) is not None:
        found.extend(("ADDRESS", m.start(), m.end(), 0.5) for m in _US.finditer(text))
        if "PO A" in text:
            found.extend(("ADDRESS", m.start(), m.end(), 0.5) for m in _MILITARY.finditer(text))
    if any(c in text for c in "路街道巷同"):
        found.extend(("ADDRESS", m.start(), m.end(), 0.5) for m in _CN.finditer(text))
    return found
