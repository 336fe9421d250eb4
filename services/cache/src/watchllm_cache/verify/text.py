"""Turning a question into what the verification rules compare.

``parse(text)`` is pure and cheap (~0.1 ms for a one-line question): greetings and
thanks dropped ("Hi team, quick question: ..."), a regex tokenizer, contractions
expanded ("don't" -> "do not", "whats" -> "what is"), hyphenated words split
("non-members" -> "non members"), Snowball English stems, synonyms mapped to one key
("cost" -> "price"), numbers and dates normalised ("£1,250" -> "1250", "Sundays" ->
"sunday"), names found (capitalised mid-sentence, acronyms; a comma ends a name), and
the question type read at the start of the question. Nothing here can fail on odd
input: an empty or symbol-only text parses to empty sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import py_rust_stemmers

from watchllm_cache.verify import lexicon

_STEMMER = py_rust_stemmers.SnowballStemmer("english")

# A number (with thousands separators, decimals or a clock's colon) and whatever unit or
# suffix is glued to it ("7pm", "1kg", "25th", "£50"); or a word (letters, digits, "+#"
# for "c++"/"c#", an apostrophe suffix); or a sentence break; or a comma, slash, quote
# or bracket (it ends a name: "Sintra, Lisbon" is two).
_TOKEN = re.compile(
    r"(?P<num>[£$€¥]?\d+(?:[.,:]\d+)*(?:[a-z%]+)?)"
    r"|(?P<word>[a-z][a-z0-9]*(?:\+\+|#)?(?:'[a-z]+)?)"
    r"|(?P<stop>[.?!:;]+)"
    r"|(?P<comma>[,/()\"&])",
    re.IGNORECASE,
)
_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": '"', "”": '"'})
_IN_ORDER_TO = re.compile(r"\bin order to\b", re.IGNORECASE)
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")
_FILLERS = re.compile(r"\b(?:" + "|".join(lexicon.FILLER_PHRASES) + r")\b[,!.:]*", re.IGNORECASE)


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    return str(_STEMMER.stem_word(word))


def _synonyms() -> dict[str, str]:
    table: dict[str, str] = {}
    for group in lexicon.SYNONYMS:
        words = group.split()
        for word in words:
            table[stem(word)] = stem(words[0])
    return table


_CANONICAL = _synonyms()
# Stopwords match by stem too: "needed" is as empty as "need". (Weak words match by
# their exact form only: "typically" is weak, "typical" is not.)
_STOP_STEMS = frozenset(stem(w) for w in lexicon.STOPWORDS)


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # lower case
    stem: str
    key: str  # the stem, or its synonym group's first stem ("cost" -> "price")
    sentence: int  # index of the sentence it is in
    capitalised: bool  # a name: capital mid-sentence, or an acronym ("I" excluded)
    upper_initial: bool  # written with a capital first letter, wherever it stands
    joined: bool  # follows the previous word directly (no comma, slash or bracket between)
    number: str | None  # normalised number or date ("50000", "7pm", "x2", "october")


@dataclass(frozen=True, slots=True)
class Parsed:
    text: str
    tokens: tuple[Token, ...]
    content: frozenset[str]  # keys of content words (no stopwords, numbers, negations)
    all_stems: frozenset[str]  # stems of every word
    numbers: frozenset[str]  # numbers, dates and times
    negations: int  # count of negation markers
    names: tuple[tuple[str, ...], ...]  # runs of capitalised words, as stems
    languages: frozenset[str]  # natural or programming languages named
    question: str  # question type: why/when/where/who/quantity/duration/what/how/yesno/other

    @property
    def entities(self) -> frozenset[str]:
        return frozenset(word for name in self.names for word in name)


def _expand(raw: str) -> list[tuple[str, str]]:
    """(kind, text) tokens with contractions expanded; words keep their case."""
    out: list[tuple[str, str]] = []
    cleaned = _FILLERS.sub(" ", raw.translate(_QUOTES)).replace("-", " ")
    cleaned = _IN_ORDER_TO.sub("to", cleaned)
    for match in _TOKEN.finditer(cleaned):
        kind = match.lastgroup or "word"
        text = match.group()
        if kind == "num":
            out.append((kind, text.lstrip("£$€¥")))
            if text.endswith("%"):
                out.append(("word", "percent"))
            continue
        if kind != "word":
            out.append((kind, text))
            continue
        low = text.lower()
        if low in lexicon.IRREGULAR_NEGATIONS:
            expanded = lexicon.IRREGULAR_NEGATIONS[low]
        elif low.endswith("n't"):
            expanded = f"{text[:-3]} not"
        elif low in lexicon.BARE_CONTRACTIONS:
            expanded = lexicon.BARE_CONTRACTIONS[low]
        elif "'" in text:
            expanded = text.split("'")[0]  # "John's" -> "John", "I'm" -> "I"
        else:
            expanded = text
        out.extend(("word", part) for part in expanded.split())
    return out


def _number_of(kind: str, low: str, capitalised: bool, nearby_number: bool) -> str | None:
    if kind == "num":
        value = low.rstrip("%")
        ordinal = _ORDINAL.match(value)
        if ordinal:
            value = ordinal.group(1)
        return re.sub(r"(?<=\d),(?=\d{3}\b)", "", value)
    if low in lexicon.NUMBER_WORDS:
        if low == "second" and not nearby_number:
            return None  # "a second opinion", "wait a second"
        return lexicon.NUMBER_WORDS[low]
    # "Sundays", "evenings"; not "Mars" (no plural of an abbreviation: "mar", "jan")
    plural = low.endswith("s") and len(low) > 4 and low[:-1] in lexicon.DATE_WORDS
    singular = low[:-1] if plural else low
    if singular in lexicon.DATE_WORDS:
        if singular in lexicon.AMBIGUOUS_DATE_WORDS and not (capitalised or nearby_number):
            return None  # "may I", "march on", "fall over", "am I"
        return singular
    return None


_LEAD_IN = frozenset("so um uh and but ok okay well hi hey hello please oh".split())


def _question_type(tokens: list[Token], question_sentence: int) -> str:
    """The kind of answer asked for, read at the start of the (first) question."""
    words = [t.text for t in tokens if t.sentence == question_sentence]
    while words and words[0] in _LEAD_IN:
        words = words[1:]
    for i, word in enumerate(words[:5]):
        if word in lexicon.QUESTION_WORDS:
            following = words[i + 1] if i + 1 < len(words) else ""
            if word == "how" and following in ("much", "many"):
                return "quantity"
            if word == "how" and following in ("long", "often", "soon"):
                return "duration"
            if word == "what" and following == "time":
                return "when"
            if word in ("which", "what", "whose"):
                return "what"
            return "who" if word == "whom" else word
    if words and words[0] in lexicon.AUXILIARIES:
        return "yesno"
    return "other"


def _title_case(pieces: list[tuple[str, str]]) -> bool:
    """Headline Style Text: capitals there say nothing about names. Judged on the words
    that neither start a sentence nor are stopwords: three or more, 75 % capitalised."""
    words = [
        text
        for (kind, text), (before, _) in zip(pieces[1:], pieces, strict=False)
        if kind == "word" and before != "stop" and text.lower() not in lexicon.STOPWORDS
    ]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) / len(words) >= 0.75


def parse(raw: str) -> Parsed:
    pieces = _expand(raw)
    title_case = _title_case(pieces)
    tokens: list[Token] = []
    sentence, question_sentence = 0, -1
    sentence_start, joined = True, False
    for index, (kind, text) in enumerate(pieces):
        if kind == "comma":
            joined = False
            continue
        if kind == "stop":
            if "?" in text and question_sentence < 0:
                question_sentence = sentence
            sentence, sentence_start, joined = sentence + 1, True, False
            continue
        low = text.lower()
        acronym = kind == "word" and text.isupper() and (len(text) > 1 or not sentence_start)
        upper = kind == "word" and text[0].isupper()
        capitalised = low != "i" and (acronym or (upper and not sentence_start and not title_case))
        near = any(pieces[j][0] == "num" for j in (index - 1, index + 1) if 0 <= j < len(pieces))
        number = _number_of(kind, low, capitalised, near)
        word_stem = stem(low)
        key = _CANONICAL.get(word_stem, word_stem)
        tokens.append(Token(low, word_stem, key, sentence, capitalised, upper, joined, number))
        sentence_start, joined = False, True
    if question_sentence < 0:  # no "?": the last sentence with words in it
        question_sentence = tokens[-1].sentence if tokens else 0
    return _summarise(raw, tokens, question_sentence)


def _names(tokens: list[Token]) -> tuple[tuple[str, ...], ...]:
    """Runs of adjacent capitalised words ("British Gas"); a comma breaks a run
    ("Munger, Bihar" is two names)."""
    names: list[tuple[str, ...]] = []
    run: list[str] = []
    for token in tokens:
        is_name = (
            token.number is None
            and (token.capitalised or token.text.endswith(("++", "#")))
            and (token.text not in lexicon.STOPWORDS or len(token.text) == 1)
        )  # "S & T"
        if run and (not is_name or not token.joined):
            names.append(tuple(run))
            run = []
        if is_name:
            run.append(token.stem)
    if run:
        names.append(tuple(run))
    return tuple(names)


def _language(token: Token) -> bool:
    if token.text not in lexicon.LANGUAGES:
        return False
    return token.text not in lexicon.AMBIGUOUS_LANGUAGES or token.upper_initial


def _summarise(raw: str, tokens: list[Token], question_sentence: int) -> Parsed:
    words = [t.text for t in tokens]
    content = frozenset(
        t.key
        for i, t in enumerate(tokens)
        if t.number is None
        and not (t.text == "time" and i > 0 and tokens[i - 1].text == "what")  # = "when"
        and t.text not in lexicon.STOPWORDS
        and t.text not in lexicon.WEAK_WORDS
        and t.stem not in _STOP_STEMS
        and t.text not in lexicon.NEGATIONS
        and t.text not in lexicon.QUESTION_WORDS
    )
    return Parsed(
        text=raw,
        tokens=tuple(tokens),
        content=content,
        all_stems=frozenset(t.stem for t in tokens),
        numbers=frozenset(t.number for t in tokens if t.number),
        negations=sum(1 for w in words if w in lexicon.NEGATIONS),
        names=_names(tokens),
        languages=frozenset(t.text for t in tokens if _language(t)),
        question=_question_type(tokens, question_sentence),
    )
