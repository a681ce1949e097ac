"""Person names: lexicons and a model shipped in PyPI packages, offline.

English (`names`, MIT licence: the US Census 1990 first-name and surname lists): a known first
name, an optional middle initial, then a known surname, capitalised and one space apart.

Chinese (`jieba`, MIT licence: its dictionary with part-of-speech tags, and the hidden-Markov
model of its POS tagger): a run of CJK characters is segmented by jieba (dictionary + HMM for
unknown words), then a token is a name when

- it begins with a surname character (the emission probability of jieba's "begins a person
  name" state, B-nr, above e^-8) and jieba found it as a new word (not in its dictionary), or
- it is in the dictionary tagged `nr`/`nrfg` (person), rarely used (count < 150: the frequent
  `nr` entries are mostly mislabelled words such as 小雨 or places such as 张家界) and begins with
  a common surname (B-nr above e^-5.5), or
- a common surname stands alone and the next token (one or two characters) is a rare word
  or a name (张 + 丹丹, 周 + 红梅), or
- a context cue names it: a 2-3 character token beginning with a surname after 叫/联系/致/找/给
  (我叫李娜, 请联系李强) or before a title (李娜老师, 张经理), when it is not in the dictionary
  or is tagged a person there and the HMM reads it as a whole name (我叫高兴 is not a name: 高兴
  is an adjective in the dictionary; 给孙子买书 neither), or
- the CJK run is the whole token (a cell "李娜", "Contact 李娜 tomorrow"): a dictionary `nr`/`nrfg`
  entry (the dictionary tags many words `nr`, so all of these must hold) beginning with a surname,
  not with 小/老/阿 (forms of address: 小姐, 老公), whose last character is likely to end a name
  (E-nr emission above e^-7.5: 李娜, 李强, not 张开 "open"), that the POS tagger's HMM reads as a
  whole name (B-nr ... E-nr: not 明白, 胡子, 王朝, 黄金, read as a name's beginning), of two
  characters with a common surname and a count under 1,000 (not 高峰, 明星, 安静), or of three
  characters rarely used (习近平; not 银行卡, tagged `nr` 216 times). Residual misses of precision:
  words such as 张望 or 金山 alone in a cell.

English, beyond the lexicon pair: a title (Dr., Mr., Mrs., Ms., Prof., ...) followed by one to three
capitalised words (Dr. Zebulon Quixote); hyphenated first names whose parts are first names
(Jean-Pierre); a known first name as a middle name (Mary Ann Smith); romanised Chinese names, a
pinyin surname (the ~100 most common, a list of facts) followed by a given name of one or two pinyin
syllables (Wang Fang, Li Xiaoming); and lower-case names only when the whole text is the name
("mary ann smith" in a cell) with one of the 1,000 most frequent Census surnames, since lower-case
first names and surnames are often ordinary words (rose gold, bill payment).

A CJK run longer than a few hundred characters is segmented in overlapping windows, so the time
stays linear in its length (jieba's HMM step is quadratic in what it is given).

The dictionary is parsed into memory on first use (about 1.5 s), without jieba's cache file in
the shared temporary folder.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from trustforge._extras import require

__all__ = ["find_names"]

_A = re.ASCII
# A capitalised word, an initial ("J."), or a hyphenated/apostrophe surname (O'Neil, Smith-Jones).
_CAP_WORD = re.compile(r"(?<![A-Za-z])(?:[A-Z][a-z]+(?:['-][A-Z][a-z]+)?|[A-Z]\.)(?![A-Za-z])", _A)


@functools.lru_cache(maxsize=1)
def english_lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames) from `names` (MIT licence; US Census 1990 frequency lists)."""
    require("privacy", "personal-name detection (PERSON)")
    root = resources.files("names")

    def read(name: str) -> frozenset[str]:
        text = root.joinpath(name).read_text(encoding="ascii")
        return frozenset(line.split()[0].capitalize() for line in text.splitlines() if line.strip())

    first = read("dist.male.first") | read("dist.female.first")
    return first, read("dist.all.last")


def find_names(text: str, types: frozenset[str] | None) -> list[tuple[str, int, int, float]]:
    """PERSON spans in `text`."""
    if types is not None and "PERSON" not in types:
        return []
    found: list[tuple[str, int, int, float]] = []
    if _HAS_UPPER.search(text) is not None:
        found.extend(_english(text))
    elif _LOWER_NAME.fullmatch(text) is not None:
        found.extend(_lower_case(text))
    if _CJK_RUN.search(text) is not None:
        found.extend(_chinese(text))
    return found


_CJK_RUN = re.compile("[\u4e00-\u9fff]{2,}")
_HAS_UPPER = re.compile("[A-Z]")
_LOWER_NAME = re.compile(r"\s*[a-z]+(?:-[a-z]+)?(?: [a-z]+(?:-[a-z]+)?){1,2}\s*", _A)
_NAME_TAGS = ("nr", "nrfg")
_RARE = 150  # dictionary count below which an `nr` entry is taken for a name
_TAIL = frozenset("于的在是和说")  # jieba glues these to an unknown name (杨桂芝于)
_CUE_BEFORE = frozenset(("叫", "名叫", "叫做", "联系", "致", "找", "给", "姓名", "收件人", "联系人"))
_CUE_AFTER = frozenset(
    (
        "先生",
        "女士",
        "小姐",
        "老师",
        "经理",
        "医生",
        "教授",
        "同学",
        "主任",
        "律师",
        "同志",
        "总监",
        "博士",
        "院长",
        "局长",
        "书记",
        "师傅",
        "阿姨",
    )
)
_END_NAME = -7.5  # log E-nr emission above which a character often ends a name (娜 -6.4, 强 -6.4; 开 -8.2)


@functools.lru_cache(maxsize=1)
def chinese_model():
    """(tokenizer, surname chars, common surname chars, rare name words, all person words, name-end chars,
    surname chars on a looser threshold) from jieba, built once."""
    import logging
    import os

    require("privacy", "personal-name detection (PERSON)")
    import jieba
    from jieba.posseg.prob_emit import P as emit

    jieba.setLogLevel(logging.WARNING)
    tk = jieba.Tokenizer()
    path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    with open(path, "rb") as f:
        tk.FREQ, tk.total = tk.gen_pfdict(f)
    tk.initialized = True  # skips jieba's own loader and its cache file in the shared temp folder
    names, persons = set(), set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] in _NAME_TAGS:
                persons.add(parts[0])
                if int(parts[1]) < _RARE:
                    names.add(parts[0])
    begin = emit[("B", "nr")]
    surnames = frozenset(c for c, lp in begin.items() if lp > -8.0 and "\u4e00" <= c <= "\u9fff")
    loose = frozenset(c for c, lp in begin.items() if lp > -8.5 and "\u4e00" <= c <= "\u9fff")  # 习 -8.1
    common = frozenset(c for c, lp in begin.items() if lp > -5.5 and "\u4e00" <= c <= "\u9fff")
    ends = frozenset(c for c, lp in emit[("E", "nr")].items() if lp > _END_NAME and "\u4e00" <= c <= "\u9fff")
    return tk, surnames, common, frozenset(names), frozenset(persons), ends, loose


# jieba's HMM step (its Viterbi copies a path per character) takes time quadratic in the length of
# what it cuts: a 40,000-character run took 6 s. A long run is cut in windows of `_WINDOW`
# characters, each reading `_OVERLAP` more on both sides (a name is at most 4 characters, its cue
# 3 and jieba's segmentation settles within a few), and keeps the names that start in its own part.
_WINDOW = 256
_OVERLAP = 16


def _windows(n: int) -> list[tuple[int, int, int, int]]:
    """(start, end, own start, own end) of the windows a run of `n` characters is cut in."""
    if n <= _WINDOW + 2 * _OVERLAP:
        return [(0, n, 0, n)]
    return [(max(0, lo - _OVERLAP), min(n, lo + _WINDOW + _OVERLAP), lo, min(n, lo + _WINDOW)) for lo in range(0, n, _WINDOW)]


def _chinese(text: str) -> list[tuple[str, int, int, float]]:
    tk, surnames, common, names, persons, ends, loose = chinese_model()
    found = []
    for m in _CJK_RUN.finditer(text):
        run = m.group()
        if loose.isdisjoint(run):
            continue
        if _lone_name(run, persons, names, common, loose, ends, tk.FREQ):
            found.append(("PERSON", m.start(), m.end(), 0.6))  # the whole run is one person word: 李娜, 习近平
            continue
        for a, b, lo, hi in _windows(len(run)):
            start, own = m.start() + a, range(m.start() + lo, m.start() + hi)
            found.extend(f for f in _chinese_tokens(list(tk.cut(run[a:b], HMM=True)), start) if f[1] in own)
    return found


def _chinese_tokens(toks: list[str], pos: int) -> list[tuple[str, int, int, float]]:
    """The names among jieba's tokens of a CJK run (or window) that begins at `pos`."""
    tk, surnames, common, names, persons, ends, loose = chinese_model()
    freq = tk.FREQ
    found = []
    i = 0
    while i < len(toks):
        w = toks[i]
        if w[0] in surnames:
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if len(w) == 1 and w in common and nxt in _CUE_AFTER:
                found.append(("PERSON", pos, pos + 1 + len(nxt), 0.6))  # 张经理
                pos, i = pos + 1 + len(nxt), i + 2
                continue
            if len(w) == 1 and w in common and 1 <= len(nxt) <= 2 and (nxt in names or freq.get(nxt, 0) < 1000):
                found.append(("PERSON", pos, pos + 1 + len(nxt), 0.6))
                pos, i = pos + 1 + len(nxt), i + 2
                continue
            cued = (i > 0 and toks[i - 1] in _CUE_BEFORE) or nxt in _CUE_AFTER
            if len(w) == 4 and w[-1] in _TAIL and not freq.get(w[:3]):
                found.append(("PERSON", pos, pos + 3, 0.6))
            elif 2 <= len(w) <= 3 and (not freq.get(w) or (w in names and w[0] in common) or (cued and w in persons and _hmm_name(w))):
                found.append(("PERSON", pos, pos + len(w), 0.6))
        pos += len(w)
        i += 1
    return found


_ADDRESS_PREFIX = frozenset("小老阿")  # 小姐, 老公, 阿姨: forms of address, not full names
_LONE_MAX = 1000  # dictionary count above which a lone `nr` entry is too common a word to be taken (高峰, 明星, 安静)


@functools.lru_cache(maxsize=4096)
def _hmm_name(word: str) -> bool:
    """Whether jieba's POS hidden-Markov model reads `word`, character by character, as one whole
    person name (begins and ends as `nr`): 李娜 B-nr E-nr; 明白, 胡子, 黄金 B-nr M-nr (a name's
    beginning, not a whole one)."""
    from jieba.posseg import char_state_tab_P, emit_P, start_P, trans_P
    from jieba.posseg.viterbi import viterbi

    _, tags = viterbi(word, char_state_tab_P, start_P, trans_P, emit_P)
    return tags[0][0] == "B" and tags[-1][0] == "E" and all(t[1] in _NAME_TAGS for t in tags)


def _lone_name(run, persons, names, common, loose, ends, freq) -> bool:
    """A CJK run that is, whole, a person's name: tagged a person in the dictionary, read as a whole
    name by the HMM, beginning with a surname and ending with a character that often ends a name."""
    if not 2 <= len(run) <= 3 or run not in persons or run[0] not in loose or run[-1] not in ends or run[0] in _ADDRESS_PREFIX:
        return False
    if len(run) == 3 and run not in names:  # three characters: rarely used only (not 银行卡, tagged `nr` 216 times)
        return False
    if len(run) == 2 and (run[0] not in common or freq.get(run, 0) >= _LONE_MAX):
        return False
    return _hmm_name(run)


# The ~100 most common Chinese surnames in pinyin (facts, not a generator's list), less those that are
# common English words or places (He, Long, Fan, Hong).
_PINYIN_SURNAMES = frozenset(
    """Li Wang Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo Lin Luo Gao Zheng Liang Xie Song Tang Han Feng
    Deng Cao Peng Zeng Xiao Tian Dong Yuan Pan Yu Jiang Cai Du Ye Cheng Su Wei Lyu Lv Ding Ren Shen Yao Lu Cui Zhong Tan
    Fan Jin Shi Liao Jia Xia Fu Fang Bai Zou Meng Xiong Qin Qiu Yin Xue Yan Duan Lei Hou Shao Mao Hao Gong Wan Qian Dai
    Mo Kong Xiang Kang Chang Qi Tao Li Lai Wen Niu Gu Ge Ou Ouyang Situ Shangguan Zhuge Sima Huo Yi Bao Geng Hong Zhan""".split()
) - {"Fan", "Hong"}  # an English word; Hong Kong
_PINYIN_SYLLABLE = (
    r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?"
    r"(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|ai|ei|ao|ou|an|en|in|un|ia|ie|iu|ua|uo|ue|ui|er|a|o|e|i|u|v)"
)
_PINYIN_GIVEN = re.compile(rf"(?=[A-Z])(?:{_PINYIN_SYLLABLE}){{1,2}}", re.ASCII | re.IGNORECASE)
_TITLE = re.compile(r"(?<![A-Za-z])(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Professor|Sir|Dame|Madam)\.? (?=[A-Z])", _A)
_NOT_NAME = frozenset(("The", "And", "Of", "In", "On", "At", "To", "For", "From", "With", "A", "An", "Is", "Or", "Will", "Has"))


def _first(w: str, first: frozenset[str]) -> bool:
    return w in first or ("-" in w and all(p in first for p in w.split("-")))


def _english(text: str) -> list[tuple[str, int, int, float]]:
    """A known first name (or two, or hyphenated), an optional initial, then a known surname, one space
    apart; a title and capitalised words; a pinyin surname and given name."""
    first, last = english_lexicon()
    words = [(m.start(), m.end(), m.group()) for m in _CAP_WORD.finditer(text)]
    found, i = [], 0
    titled = {m.end() for m in _TITLE.finditer(text)}
    while i < len(words):
        s, e, w = words[i]
        if s in titled:  # Dr. Zebulon Quixote: the capitalised words after a title
            j = i
            while j + 1 < len(words) and j - i < 2 and words[j + 1][0] == words[j][1] + 1 and words[j + 1][2] not in _NOT_NAME:
                j += 1
            if w not in _NOT_NAME:
                found.append(("PERSON", s, words[j][1], 0.7))
                i = j + 1
                continue
        if i == len(words) - 1:
            break
        j = i + 1
        if words[j][2].endswith(".") and j + 1 < len(words) and words[j][0] == e + 1:  # middle initial
            e, j = words[j][1], j + 1
        elif (
            words[j][2] in first
            and j + 1 < len(words)
            and words[j][0] == e + 1
            and words[j + 1][0] == words[j][1] + 1
            and words[j + 1][2] in last
        ):  # Mary Ann Smith
            e, j = words[j][1], j + 1
        ls, le, lw = words[j]
        if ls == e + 1 and ((_first(w, first) and lw in last) or (w in _PINYIN_SURNAMES and _PINYIN_GIVEN.fullmatch(lw) and j == i + 1)):
            found.append(("PERSON", s, le, 0.7))
            i = j + 1
        else:
            i += 1
    return found


_LOWER_SURNAMES = 1000  # a lower-case name needs one of the most frequent Census surnames (not "gold", "down", "money")


@functools.lru_cache(maxsize=1)
def _common_surnames() -> frozenset[str]:
    """The `_LOWER_SURNAMES` most frequent Census 1990 surnames (the list is in order of frequency)."""
    lines = resources.files("names").joinpath("dist.all.last").read_text(encoding="ascii").splitlines()
    return frozenset(line.split()[0].capitalize() for line in lines[:_LOWER_SURNAMES] if line.strip())


def _lower_case(text: str) -> list[tuple[str, int, int, float]]:
    """A text that is, whole, a lower-case name ("mary ann smith"): each word looked up capitalised,
    the surname among the most frequent (lower-case cells such as "rose gold" or "bill payment" are
    words that the lists also hold as names)."""
    first, _ = english_lexicon()
    last = _common_surnames()
    stripped = text.strip()
    parts = [p.capitalize() if "-" not in p else "-".join(x.capitalize() for x in p.split("-")) for p in stripped.split(" ")]
    if all(_first(p, first) for p in parts[:-1]) and parts[-1] in last:
        s = text.index(stripped)
        return [("PERSON", s, s + len(stripped), 0.6)]
    return []


@functools.lru_cache(maxsize=1)
def _sorted_lexicon() -> tuple[tuple[str, ...], dict[str, int], tuple[str, ...], dict[str, int]]:
    first, last = english_lexicon()
    f, lst = tuple(sorted(first)), tuple(sorted(last))
    return f, {n: i for i, n in enumerate(f)}, lst, {n: i for i, n in enumerate(lst)}


def fake_name(fpe, text: str, tweak: bytes, dec: bool) -> str:
    """A keyed, reversible stand-in for a name: each word known to the lexicon becomes another
    word of the same list (first names stay first names); other letters are permuted in place."""
    from trustforge.privacy._fpe import FPE  # noqa: F401  (type of `fpe`)

    first, first_ix, last, last_ix = _sorted_lexicon()
    words = text.split(" ")
    out = []
    for i, w in enumerate(words):
        table, index = (first, first_ix) if i < len(words) - 1 else (last, last_ix)
        if w in index:
            op = fpe.decrypt if dec else fpe.encrypt
            out.append(table[op(index[w], len(table), tweak + (b"f" if table is first else b"l"))])
        else:
            out.append(_permute_letters(fpe, w, tweak, dec))
    return " ".join(out)


@functools.lru_cache(maxsize=1)
def _cjk_alphabets() -> tuple[str, str]:
    """(surname characters, given-name characters) of jieba's name model, sorted: what Chinese
    characters of a name are permuted within, so a fake still reads like a name."""
    require("privacy", "personal-name masking (PERSON)")
    from jieba.posseg.prob_emit import P as emit

    _, surnames, *_ = chinese_model()
    given = {c for state in ("M", "E") for c, lp in emit[(state, "nr")].items() if lp > -9.0 and "\u4e00" <= c <= "\u9fff"}
    return "".join(sorted(surnames)), "".join(sorted(given))


_CJK_BLOCK = "".join(chr(c) for c in range(0x4E00, 0x9FA6))


def _permute_cjk(fpe, word: str, tweak: bytes, dec: bool) -> str:
    surnames, given = _cjk_alphabets()
    out = []
    for k, c in enumerate(word):
        if not "\u4e00" <= c <= "\u9fa5":
            out.append(c)
            continue
        alphabet = surnames if k == 0 and c in surnames else given if c in given else _CJK_BLOCK
        out.append(fpe.alphabet(c, alphabet, tweak + b"c" + bytes([min(k, 255)]) + str(len(alphabet)).encode(), decrypt=dec))
    return "".join(out)


def _permute_letters(fpe, word: str, tweak: bytes, dec: bool) -> str:
    lower = "abcdefghijklmnopqrstuvwxyz"
    if any("\u4e00" <= c <= "\u9fa5" for c in word):
        word = _permute_cjk(fpe, word, tweak, dec)
    return fpe.classwise(word, ((lower, b"l"), (lower.upper(), b"u")), tweak, decrypt=dec)
