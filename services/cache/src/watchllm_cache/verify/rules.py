"""The verification rules: each compares two parsed questions and names what differs.

A rule returns ``None`` when it sees no reason to refuse, else a short reason. The
order in ``RULES`` is the order they are tried (cheapest and most specific first); the
first reason refuses. ``verify/__init__.py`` documents what each rule is for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from watchllm_cache.verify import lexicon
from watchllm_cache.verify.compare import (
    content_difference,
    content_sequence,
    one_block_move,
    rewording,
)
from watchllm_cache.verify.text import Parsed, stem

Rule = Callable[[Parsed, Parsed], str | None]

# Word edits outside the differing content words that make a pair a rewording rather
# than a minimal contrast (``single_word``, ``narrower``).
MIN_REWORDING = 4
# Longest question (in content words) whose word order ``word_order`` judges.
MAX_ORDERED = 6


def _antonyms() -> frozenset[tuple[str, str]]:
    pairs = set()
    for item in lexicon.ANTONYM_PAIRS.replace("\n", " ").split(";"):
        words = item.split()
        if len(words) == 2:
            a, b = stem(words[0]), stem(words[1])
            pairs |= {(a, b), (b, a)}
    return frozenset(pairs)


_ANTONYMS = _antonyms()
_PREFIXES = lexicon.NEGATING_PREFIXES


def _show(items: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(items)) + "}"


def numbers(q: Parsed, c: Parsed) -> str | None:
    """Numbers, amounts, times and dates must be the same, as a multiset."""
    if q.numbers != c.numbers:
        return f"numbers {_show(q.numbers)} vs {_show(c.numbers)}"
    return None


def negation(q: Parsed, c: Parsed) -> str | None:
    """An odd number of negations on one side only flips the question."""
    if q.negations % 2 != c.negations % 2:
        return "negation"
    return None


def negating_prefix(q: Parsed, c: Parsed) -> str | None:
    """ "lock"/"unlock", "legal"/"illegal": one side negates a word of the other."""
    for a, b in ((q, c), (c, q)):
        own, other = {t.text for t in a.tokens}, {t.text for t in b.tokens}
        for word in own - other:
            for prefix in _PREFIXES:
                base = word[len(prefix) :]
                if word.startswith(prefix) and len(base) >= 3 and base in other and base not in own:
                    return f"negated word {word!r} vs {base!r}"
    return None


def antonym(q: Parsed, c: Parsed) -> str | None:
    """One side has a word, the other its opposite ("best"/"worst", "to"/"from" aside)."""
    for x in q.all_stems - c.all_stems:
        for y in c.all_stems - q.all_stems:
            if (x, y) in _ANTONYMS:
                return f"opposite {x!r} vs {y!r}"
    return None


def language(q: Parsed, c: Parsed) -> str | None:
    """Both name a language (natural or programming): it must be the same one."""
    if q.languages and c.languages and q.languages != c.languages:
        return f"language {_show(q.languages)} vs {_show(c.languages)}"
    return None


def _related(word: str, stems: frozenset[str]) -> bool:
    """The word itself, or a short derivation of it: "Syria"/"Syrian", "America"/"American"."""
    if word in stems:
        return True
    return len(word) >= 4 and any(
        len(other) >= 4 and 0 < abs(len(other) - len(word)) <= 3
        and (other.startswith(word) or word.startswith(other))
        for other in stems
    )  # fmt: skip


def _shortened(name: tuple[str, ...], word: str, other: Parsed) -> bool:
    """The other side writes this name without its first words ("Donald Trump" ->
    "Trump"): the rest of the name is there, and not as part of a different name."""
    index = name.index(word)
    stems = [t.stem for t in other.tokens]
    for start in range(index + 1, len(name)):
        tail = list(name[start:])
        for i in range(len(stems) - len(tail) + 1):
            if stems[i : i + len(tail)] == tail and not (i > 0 and other.tokens[i - 1].capitalised):
                return True
    return False


def entity(q: Parsed, c: Parsed) -> str | None:
    """A name (capitalised mid-sentence, an acronym) on one side must be on the other."""
    for one, other in ((q, c), (c, q)):
        for name in one.names:
            for word in name:
                if not _related(word, other.all_stems) and not _shortened(name, word, other):
                    return f"entity {word!r}"
    return None


def _role_objects(p: Parsed) -> dict[str, str]:
    """content key -> the role of the preposition it is the object of ("to", "from",
    "than"): the first word after the preposition, past determiners only. After "to"
    an object needs a determiner or a capital ("to the data", "to PDF"): a bare word
    there is mostly a verb ("to download")."""
    roles: dict[str, str] = {}
    tokens = p.tokens
    for i, token in enumerate(tokens):
        role = lexicon.DIRECTIONAL.get(token.text)
        if role is None:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].text in lexicon.DETERMINERS:
            j += 1
        if j >= len(tokens) or tokens[j].key not in p.content:
            continue
        if role == "to" and j == i + 1 and not tokens[j].upper_initial:
            continue
        roles.setdefault(tokens[j].key, role)
    return roles


def _after_to(p: Parsed, shared: frozenset[str] | set[str]) -> set[str]:
    """Shared content words right after a bare "to" or "into" (no determiner, no
    capital)."""
    tokens = p.tokens
    return {
        tokens[i + 1].key for i, token in enumerate(tokens[:-1])
        if token.text in ("to", "into") and tokens[i + 1].key in shared
    }  # fmt: skip


def direction(q: Parsed, c: Parsed) -> str | None:
    """ "from A to B" is not "from B to A"; "A better than B" is not "B better than A".

    A word both sides share that is the object of a directional preposition on one side
    must not be the object of another one on the other side, nor have its role taken
    over there by another shared word (the Word-to-PDF / PDF-to-Word swap)."""
    q_roles, c_roles = _role_objects(q), _role_objects(c)
    shared = q.content & c.content
    for word in sorted(shared):
        rq, rc = q_roles.get(word), c_roles.get(word)
        if rq == rc:
            continue
        if rq is not None and rc is not None:
            return f"direction {word!r}: {rq!r} vs {rc!r}"
        role, other, own = (rq, c_roles, q_roles) if rq is not None else (rc, q_roles, c_roles)
        for taker in sorted(shared - {word}):
            if other.get(taker) == role and own.get(taker) != role:
                return f"direction {word!r} / {taker!r} around {role!r}"
    # "convert dollars to euros" vs "convert euros to dollars": a bare word after "to"
    # is usually a verb ("how to download"), but when both sides put a different one of
    # their shared words there, the target changed.
    q_to, c_to = _after_to(q, shared), _after_to(c, shared)
    if q_to and c_to and q_to.isdisjoint(c_to):
        return f"direction: to {sorted(q_to)} vs to {sorted(c_to)}"
    return None


# Question types that ask for a different kind of answer from each other. "what",
# "how" and statements ("other") mix freely with each other: "What's a good way to X"
# and "How do I X" ask the same.
_SPECIFIC = frozenset({"why", "when", "where", "who", "quantity", "duration", "yesno"})
_COMPATIBLE = frozenset({("quantity", "what"), ("duration", "what"), ("when", "what"),
                         ("where", "what"), ("who", "what"), ("why", "what")})  # fmt: skip


def question_type(q: Parsed, c: Parsed) -> str | None:
    """ "Why X?" is not "Is X?", "When ..." is not "Where ...", "Can I X?" is not
    "How do I X?"."""
    a, b = q.question, c.question
    if a == b or "other" in (a, b) or (a not in _SPECIFIC and b not in _SPECIFIC):
        return None
    if (a, b) in _COMPATIBLE or (b, a) in _COMPATIBLE:
        return None
    return f"question type {a!r} vs {b!r}"


def single_word(q: Parsed, c: Parsed) -> str | None:
    """Same words but one: that word is what the question is about.

    "a carpet clean for a hallway / for a staircase", "(seasonal) allergies", "economy /
    first class passengers": when every content word but one (or one against two) is
    shared and the rest of the sentence is hardly reworded (fewer than
    ``MIN_REWORDING`` other word edits), the words that differ are the point of the
    question. Typos and spelling variants are paired off first; a real paraphrase
    rewords more ("What tools do I need to fit a shelf?" / "Which tools does fitting a
    shelf require?").
    """
    only_q, only_c = content_difference(q, c)
    if not (only_q and only_c) and len(only_q | only_c) != 1:
        return None  # nothing differs, or only additions (``narrower``)
    if min(len(only_q), len(only_c)) > 1 or max(len(only_q), len(only_c)) > 2:
        return None
    if rewording(q, c, max(len(only_q), len(only_c))) >= MIN_REWORDING:
        return None
    return f"one word differs: {_show(only_q)} vs {_show(only_c)}"


def narrower(q: Parsed, c: Parsed) -> str | None:
    """One question is the other plus more words: it asks something narrower.

    "How do I learn to draw (portraits with charcoal)?": every content word of one side
    is on the other, which adds two or more of its own (one is ``single_word``'s case),
    and the rest is hardly reworded."""
    only_q, only_c = content_difference(q, c)
    if bool(only_q) == bool(only_c):
        return None
    if rewording(q, c, len(only_q | only_c)) >= MIN_REWORDING:
        return None
    return f"adds {_show(only_q or only_c)}"


def person(q: Parsed, c: Parsed) -> str | None:
    """Whose question: "read my messages" is not "read someone's messages", "What does
    X mean to you?" asks for a personal answer "What does X mean?" does not."""
    qw, cw = Counter(t.text for t in q.tokens), Counter(t.text for t in c.tokens)
    for a, b in ((qw, cw), (cw, qw)):
        if set(a - b) & lexicon.THIRD_PARTY and set(b - a) & lexicon.FIRST_PERSON_OBJECTS:
            return "third party vs first person"
    qp, cp = _personal(q), _personal(c)
    if qp != cp:
        return f"personal {_show(qp)} vs {_show(cp)}"
    return None


def _personal(p: Parsed) -> set[str]:
    """ "to you", "for me": a pronoun object of "to"/"for" at the end of a clause."""
    tokens = p.tokens
    return {
        f"{tokens[i].text} {tokens[i + 1].text}"
        for i in range(len(tokens) - 1)
        if tokens[i].text in ("to", "for")
        and tokens[i + 1].text in lexicon.PERSONAL_OBJECTS
        and (i + 2 == len(tokens) or tokens[i + 2].sentence != tokens[i + 1].sentence)
    }


def word_order(q: Parsed, c: Parsed) -> str | None:
    """Same words, other roles: "Should a teacher befriend a student?" / "Should a
    student befriend a teacher?", "a horse pulling a cart" / "a cart pulling a horse".

    Only for short questions (``MAX_ORDERED`` content words) with the same content words
    and no "by" (a rewording may reorder freely: passive voice, moved clauses). Moving
    one phrase ("In the photo editor, how do I crop an image?") is fine, and so is
    swapping words joined by "and"/"or"/"vs"."""
    only_q, only_c = content_difference(q, c)
    if only_q or only_c:
        return None
    a = content_sequence(q)
    b = content_sequence(c)
    passive = any(t.text == "by" for t in (*q.tokens, *c.tokens))
    if passive or len(a) > MAX_ORDERED or set(a) != set(b) or one_block_move(a, b):
        return None
    return "same words in other roles"


RULES: tuple[Rule, ...] = (
    numbers, negation, negating_prefix, antonym, language, entity, direction,
    word_order, question_type, person, single_word, narrower,
)  # fmt: skip
