"""Pure-Python PTB tokenisation as the COCO caption evaluation runs it (no Java).

``pycocoevalcap.tokenizer.PTBTokenizer`` joins the captions with newlines, runs Stanford CoreNLP 3.4.1's
``PTBTokenizer -preserveLines -lowerCase`` over them and drops the tokens of its punctuation list. This
module reproduces that pipeline: a longest-match scanner over the same joined text (so the context one
caption gives the next, e.g. an abbreviation at the end of a caption before a capitalised one, is the same),
PTB3 escaping (``(`` -> ``-LRB-``, quotes -> ````/''``, dashes -> ``--``, ``...``, ``£`` -> ``#``),
contractions and possessives split (``dog's`` -> ``dog 's``, ``can't`` -> ``ca n't``, ``cannot`` ->
``can not``, ``gonna`` -> ``gon na``), abbreviations kept (``mr.``, ``etc.``, ``u.s.``), then lower-casing
and the punctuation filter. The escaped brackets survive the filter, as in pycocoevalcap: it lists
``-LRB-`` but the tokens were already lower-cased to ``-lrb-``.

The rules were derived from the behaviour of the 3.4.1 jar and are checked against it in
``tests/test_metrics_caption.py``. Known differences (rare in captions): URLs and e-mail addresses are only
roughly recognised, SGML-like ``<...>`` text, words joined by ``?``/``!``, and the curly apostrophe inside
``rock’n’roll``. Carriage returns, form feeds and similar line breaks are treated as spaces (the Java
tokenizer turns them into extra lines, which shifts every later caption in pycocoevalcap).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["COCO_PUNCTUATIONS", "ptb_tokenize", "ptb_tokens"]

COCO_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])  # fmt: skip

# Abbreviations, from the 3.4.1 jar's behaviour. KEEP: never sentence-final ("mr. Smith"). FINAL: kept, and
# an extra "." follows when a sentence end follows (space + capital, two spaces / line ends, or the end).
# NUMBER: kept only before a number ("no. 5"). Sets are lower-case; *_CASED hold the case-sensitive ones.
_KEEP = set(
    "adj adm adv assoc asst atty attys brig capt cmdr col comdr cpl det dr drs ens ft gen gov govs hon insp "
    "lieut lt maj messrs mlle mme mr mrs ms msgr mt pfc pres prof profs pvt rep reps rev sen sens sfc sgt spc "
    "st ste supt supts ave cf cie dept elec invt jos mfg mtg natl ph treas vs wm".split()
)
_FINAL = set(
    "ala apr ariz assn aug bancorp bhd bldg bros calif co colo conn corp cos ct dak dec esq feb fla fri ga inc "
    "ind intl jan jr jul jun kan kans ky ltd mar md mich minn mo mon mont neb nev nov oct okla penn plc pte pty "
    "ptys rt sep sept sr sys tenn thu thurs tue tues univ va vt wed wis wisc wyo al blvd est etc ext rd seq sq "
    "tel".split()
)
_FINAL_CASED = {"Ark", "Az", "Del", "Ill", "La", "Mass", "Miss", "Ore", "Pa", "Tex", "Wash"}
_NUMBER = set("art ca fig no nos op pp prop".split())
# Capitalised words after which an acronym ("u.s.", "x.") ends a sentence.
_SENTENCE_STARTS = set(
    "the a an this that these it he she they we you in at but if so there what when her their our then now "
    "some many one after here however since while yet such other as".split()
)
_WORD_STARTS_NEW_SENTENCE = re.compile(r"[^\S\n]*\n?\s*([^\W\d_]+)(?![\w'])")
_PLAIN = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")
_CONTRACTED = {"cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "lemme": 3, "gimme": 3}
_SPACE = " \t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u3000\r\x0b\x0c\x85\u2028\u2029"
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_FIXED = {"\u201c": "``", "\u201d": "''", "\u00ab": "``", "\u00bb": "''", "\u2039": "`", "\u203a": "'", "\u2018": "`",
          "\u201b": "`", "`": "`", "``": "``", "''": "''", "\u00a3": "#", "\u20ac": "$", "\u00a2": "cents",
          "&amp;": "&", "\u2026": "...", "\u2013": "--", "\u2014": "--", "\u2015": "--", "\u2012": "--"}  # fmt: skip

_W = r"[^\W_]|[\u0300-\u036f]"  # letter / digit (and combining marks)
_RULES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("sgml", r"</?[A-Za-z!?][^>\n]*>"),
        ("fracchar", "[\u00bc\u00bd\u00be\u2153]"),
        ("ellipsis", r"\.\.\.+|\.(?:[ \u00a0]\.){2,}"),
        ("fraction", r"(?:\d{1,4}[- \u00a0])?\d{1,4}\\?/\d{1,4}"),
        ("number", r"[-+]?(?:\d*(?:[-.:,\u00ad]\d+)+|\d+)"),
        ("email", r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+"),
        ("url", r"(?:https?|ftp)://[^\s<>\"()\[\]{}]*\.[^\s<>\"()\[\]{}]*[^\s<>\"()\[\]{}.,!?;:'-]"),
        ("acronym", r"[A-Za-z](?:\.[A-Za-z])*\."),
        ("abbrev", r"[A-Za-z]+\."),
        ("dotted", rf"[^\W\d_](?:{_W}|_)*(?:\.(?:{_W}|_)+)+"),
        ("slash", rf"(?:{_W}|_)+(?:-[^\W\d_]+){{0,2}}(?:\\?/(?:{_W}|_)+(?:-[^\W\d_]+){{0,2}}){{1,2}}"),
        ("amp", r"[A-Z]+(?:&(?:amp;)?[A-Z]+)+"),
        ("word", rf"(?:{_W}|_)+(?:-(?:{_W}|_)+)*"),
        ("twitter", r"[@#][A-Za-z]\w*"),
        (
            "apoword",
            r"[A-HJ-XZa-hj-xz]['\u2019][^\W\d_]{2,}|[^\W\d_]+[aeiouy]['\u2019][aeiou][^\W\d_]*"
            r"|['\u2019]n['\u2019]?|(?:[lLdDjJ]|ol)['\u2019](?![^\W\d_])|['\u2019](?:em|till?|cause|[2-9]0s)(?![^\W\d_])"
            r"|['\u2019][tT](?=(?:is|was)(?![^\W\d_]))|[yY]['\u2019](?=[^\W\d_])",
        ),
        ("redaux", r"['\u2019](?:[sSmMdD]|re|RE|ve|VE|ll|LL)(?![^\W\d_])"),
        ("not", r"[nN]['\u2019][tT](?![^\W\d_])"),
        ("quotes", r"``|''"),
        ("dashes", r"--+"),
        ("marks", r"[?!]+"),
        (
            "fixed",
            r"&amp;|[\u201c\u201d\u00ab\u00bb\u2039\u203a\u2018\u201b`\u00a3\u20ac\u00a2\u2026\u2012-\u2015]",
        ),
        ("char", r"[^\s]"),
    ]
]


def _longest(text: str, pos: int) -> tuple[str, str]:
    best_name, best = "", ""
    for name, pattern in _RULES:
        m = pattern.match(text, pos)
        if m and len(m.group()) > len(best):
            best_name, best = name, m.group()
    return best_name, best


def _sentence_start_follows(text: str, end: int) -> bool:
    m = _WORD_STARTS_NEW_SENTENCE.match(text, end)
    return bool(m) and m.start(1) > end and m.group(1)[0].isupper() and m.group(1).lower() in _SENTENCE_STARTS


def _sentence_end_follows(text: str, end: int) -> bool:
    """PTBLexer's SENTEND: a space/newline then another space/newline or a capital, or the end of the text."""
    if end >= len(text):
        return True
    if text[end] not in _SPACE and text[end] != "\n":
        return False
    nxt = text[end + 1 : end + 2]
    return nxt == "" or nxt in _SPACE or nxt == "\n" or "A" <= nxt <= "Z"


def _period_token(name: str, tok: str, text: str, end: int) -> list[str]:
    """Tokens for ``word.`` / ``x.y.``: kept whole, split off the period, or followed by an extra period."""
    stem = tok[:-1]
    if name == "acronym" and len(stem) == 1:
        return [stem, "."] if _sentence_start_follows(text, end) else [tok]
    if name == "acronym":
        return [tok, "."] if _sentence_start_follows(text, end) else [tok]
    if stem.lower() in _KEEP:
        return [tok]
    if stem.lower() in _FINAL or stem in _FINAL_CASED:
        return [tok, "."] if _sentence_end_follows(text, end) else [tok]
    if stem.lower() in _NUMBER and re.match(r"[ \t\u00a0]+\d", text[end:]):
        return [tok]
    return [stem, "."]


def _word_tokens(tok: str, text: str, end: int) -> list[str]:
    """Split ``don't`` -> ``do n't`` (the word stops before the ``n``) and ``gonna`` -> ``gon na``."""
    cut = _CONTRACTED.get(tok.lower())
    if cut and "-" not in tok:
        return [tok[:cut], tok[cut:]]
    if len(tok) > 1 and tok[-1] in "nN" and re.match(r"['\u2019][tT](?![^\W\d_])", text[end:]):
        return [tok[:-1]]  # the "n" is re-scanned as part of "n't"
    return [tok]


def _quote(ch: str, text: str, start: int, end: int) -> str:
    nxt = text[end : end + 1]
    if ch == '"':
        return "``" if nxt and (nxt.isalnum() or nxt == "$") else "''"
    prev = text[start - 1 : start] if start else ""
    opening = (not prev or prev.isspace() or prev in "([{\"'`\u201c\u2018") and nxt.isalnum()
    return "`" if opening else "'"


def _scan(text: str) -> list[list[str]]:
    """PTB tokens of every line of ``text`` (newline-separated captions), before lower-casing."""
    lines: list[list[str]] = [[]]
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "\n":
            lines.append([])
            pos += 1
            continue
        if ch in _SPACE or ch.isspace() or ord(ch) > 0xFFFF:  # astral characters: "untokenizable", deleted
            pos += 1
            continue
        name, tok = _longest(text, pos)
        end = pos + len(tok)
        if name in ("acronym", "abbrev"):
            out = _period_token(name, tok, text, end)
        elif name == "word":
            out = _word_tokens(tok, text, end)
            end = pos + len(out[0]) + (len(out[1]) if len(out) > 1 else 0)
        elif name in ("fraction", "sgml"):
            out = [tok.replace(" ", "\u00a0")]
        elif name == "ellipsis":
            out = ["..."]
        elif name in ("redaux", "not"):
            out = [tok.replace("\u2019", "'")]
        elif name == "dashes":
            out = ["--"]
        elif name == "fixed":
            out = [_FIXED[tok]]
        elif tok in _BRACKETS:
            out = [_BRACKETS[tok]]
        elif tok in ("'", '"', "\u2019"):
            out = [_quote(tok, text, pos, end)]
        else:
            out = [_FRACTIONS.get(tok, tok)]  # apoword, numbers, words, other single characters
        lines[-1].extend(out)
        pos = end
    return lines


def ptb_tokens(captions: Iterable[str]) -> list[list[str]]:
    """Lower-cased PTB tokens of each caption (before the COCO punctuation filter).

    Args:
        captions: Captions, tokenised as one newline-joined text like pycocoevalcap does (order matters only
            for an abbreviation that ends a caption right before a capitalised one).
    """
    captions = [c.replace("\n", " ") for c in captions]
    out = []
    for i, caption in enumerate(captions):
        if _PLAIN.fullmatch(caption):  # fast path: lower-case words and numbers only
            tokens = [t for word in caption.split(" ") for t in _word_tokens(word, "", 0)]
        else:  # the scanner sees the start of the following captions, as in one newline-joined text
            following = "\n".join(captions[i + 1 : i + 4])[:64]
            tokens = _scan(caption + ("\n" + following if i + 1 < len(captions) else ""))[0]
        out.append(" ".join(tokens).lower().split(" ") if tokens else [])
    return out


def ptb_tokenize(captions: Iterable[str]) -> list[str]:
    """Captions as the COCO caption evaluation scores them: PTB tokens, lower-cased, punctuation removed.

    Equivalent to ``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer`` (Stanford CoreNLP 3.4.1 through
    Java) on the same list of captions, without Java.

    Args:
        captions: Raw captions.

    Returns:
        One space-joined token string per caption (``"a dog 's toy"``).
    """
    return [" ".join(t for t in tokens if t not in COCO_PUNCTUATIONS) for tokens in ptb_tokens(captions)]
