"""Training pairs for the learned verifier, generated from the seeds in ``seeds.py``.

Reproducible: one ``random.Random(seed)`` drives every choice, and the output order is
fixed, so the same seed gives byte-identical pairs (``data_hash`` in the training
report). Positives are meaning-preserving edits of a seed question (its hand-written
rewording, typos, casing, greetings and thanks, a sentence of context before it,
numerals <-> words, synonyms from the table below, another question opener,
contractions), alone and stacked. Hard negatives are meaning-changing edits (a sibling
name or noun, another number, another language, two roles swapped, a negation, a
narrower scope, one contrasting word), often with a meaning-preserving edit on top so
that "edited" never means "different". ``frame_pairs`` and ``aspect_pairs`` add the
written question frames of ``frames.py`` (heavy rewordings; other questions on the
same topic). Each pair carries its ``kind`` and
its seed's ``group`` (domain and index) so the trainer can hold whole seeds out.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

from watchllm_cache.training.frames import (
    ASPECT_FRAMES,
    CONTRASTS,
    FRAMES,
    PREAMBLES,
    TOPICS,
)
from watchllm_cache.training.seeds import LANGUAGES, SEEDS, SIBLINGS

_SLOT = re.compile(r"\{([a-z]\d?):([^}]+)\}")

# Synonyms for positives, general English (kept apart from verify/lexicon.py's table on
# purpose: the model must not only learn what the rules already know).
SYNONYMS: tuple[tuple[str, str], ...] = (
    ("fix", "repair"), ("quickest", "fastest"), ("cheapest", "least expensive"),
    ("stop", "prevent"), ("get rid of", "eliminate"), ("remove", "take out"),
    ("best", "ideal"), ("make", "prepare"), ("improve", "get better at"),
    ("help", "assist"), ("need", "require"), ("safe", "OK"), ("usually", "normally"),
    ("start", "begin"), ("buy", "purchase"), ("find", "locate"), ("cost", "price"),
    ("enough", "sufficient"), ("check", "verify"), ("change", "alter"),
    ("learn", "pick up"), ("how long", "how much time"), ("allowed", "permitted"),
    ("good", "decent"), ("child", "kid"), ("home", "house"), ("car", "vehicle"),
    ("big", "large"), ("send back", "return"), ("quickly", "fast"),
    ("method", "way"), ("signs", "indications"), ("normal", "typical"),
)  # fmt: skip

OPENERS: tuple[tuple[str, ...], ...] = (
    ("How do I ", "How can I ", "How should I ", "What's the way to ", "How would I "),
    ("Can I ", "Am I able to ", "Is it possible to ", "Could I "),
    ("What is ", "What's "),
    ("Is it ", "Would it be "),
)

GREETINGS = ("Hi, ", "Hello! ", "Quick question: ", "Hey, ", "Sorry to bother you, ",
             "Hi there, ", "Good morning. ", "I was wondering: ", "Please help: ")  # fmt: skip
THANKS = (" Thanks!", " Thank you.", " Cheers", " Thanks in advance.", " Any help appreciated.",
          " Many thanks", " Thanks a lot!")  # fmt: skip
SCOPES = (" for beginners", " in winter", " on a budget", " for a small business",
          " without any tools", " at night", " for kids", " in an apartment",
          " after surgery", " in the first week", " for a wedding", " while pregnant",
          " on a boat", " for someone over 70", " in a hot climate")  # fmt: skip
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()
NEGATIONS: tuple[tuple[str, str], ...] = (
    (r"^Can I ", "Can't I "), (r"^Can ", "Can't "), (r"^Is it ", "Isn't it "),
    (r"^Should I ", "Should I not "), (r"^Should ", "Shouldn't "), (r"^Do I ", "Don't I "),
    (r"^Does ", "Doesn't "), (r"^Do ", "Don't "), (r"^Is ", "Isn't "), (r" with ", " without "),
    (r"^Why is ", "Why isn't "), (r"^Why does ", "Why doesn't "),
    (r"^How do I ", "How do I avoid "), (r"^How can I ", "How can I avoid "), (r" is ", " is not "),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str
    group: str


def _sibling_groups() -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for group in (*SIBLINGS, *LANGUAGES):
        for word in group:
            groups.setdefault(word, group)
    return groups


_GROUPS = _sibling_groups()


def fill(template: str, values: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(2)), template)


def slots(template: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _SLOT.finditer(template)}


def _sibling(value: str, rng: random.Random) -> str | None:
    group = _GROUPS.get(value)
    others = [w for w in group or () if w != value]
    return rng.choice(others) if others else None


def _other_number(value: str, rng: random.Random) -> str:
    n = int(value)
    choices = {n + 1, n + 2, max(n - 1, 1), n * 2, n + 10, n * 3} - {n}
    if n > 1000:  # a year
        choices = {n + 1, n - 1, n + 10, n - 20, n + 4}
    return str(rng.choice(sorted(choices)))


# -- meaning-preserving edits: text -> text (or None when it does not apply) --


def typo(text: str, rng: random.Random) -> str | None:
    words = [(m.start(), m.end()) for m in re.finditer(r"[a-z]{5,}", text)]
    if not words:
        return None
    start, end = rng.choice(words)
    w = text[start:end]
    i = rng.randrange(1, len(w) - 1)
    op = rng.randrange(4)
    if op == 0:
        w = w[:i] + w[i + 1 :]
    elif op == 1:
        w = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    elif op == 2:
        w = w[:i] + w[i] + w[i:]
    else:
        w = w[:i] + rng.choice("aeioustnrl") + w[i + 1 :]
    return text[:start] + w + text[end:]


def casing(text: str, rng: random.Random) -> str | None:
    return rng.choice((text.lower(), text.upper(), text.rstrip("?"), text.lower().rstrip("?")))


def polite(text: str, rng: random.Random) -> str | None:
    choice = rng.randrange(3)
    head = rng.choice(GREETINGS)
    body = text[0].lower() + text[1:] if head.endswith(", ") and text[:2] != "I " else text
    if choice == 0:
        return head + body
    if choice == 1:
        return text + rng.choice(THANKS)
    return head + body + rng.choice(THANKS)


def preamble(text: str, rng: random.Random) -> str | None:
    """A sentence of context before the question ("I'm a complete beginner. ...")."""
    head = rng.choice(PREAMBLES)
    lower = head.endswith(("but ", ": ")) and text[:2] != "I "
    return head + (text[0].lower() + text[1:] if lower else text)


def numerals(text: str, rng: random.Random) -> str | None:
    def word(m: re.Match[str]) -> str:
        return NUMBER_WORDS[int(m.group())]

    out = re.sub(r"\b(1\d|20|[1-9])\b", word, text)
    if out != text:
        return out
    pattern = r"\b(" + "|".join(NUMBER_WORDS[1:]) + r")\b"
    out = re.sub(pattern, lambda m: str(NUMBER_WORDS.index(m.group())), text)
    return out if out != text else None


def synonym(text: str, rng: random.Random) -> str | None:
    options = []
    for x, y in SYNONYMS:
        for old, new in ((x, y), (y, x)):
            if re.search(rf"\b{re.escape(old)}\b", text):
                options.append((old, new))
    if not options:
        return None
    old, new = rng.choice(options)
    return re.sub(rf"\b{re.escape(old)}\b", new, text, count=1)


def opener(text: str, rng: random.Random) -> str | None:
    for group in OPENERS:
        for start in group:
            if text.startswith(start):
                other = rng.choice([s for s in group if s != start])
                return other + text[len(start) :]
    return None


_TRAILING = re.compile(
    r"^(?P<head>.+?) (?P<tail>(?:in|on|for|with|during|at|when|after|before) [^,?]+)\?$"
)
_LEADING = re.compile(
    r"^(?P<tail>(?:In|On|For|With|During|At|When|After|Before) [^,?]+), (?P<head>.+)\?$"
)


def reorder(text: str, rng: random.Random) -> str | None:
    """Move a trailing phrase to the front, or a leading one to the end ("How do I X in
    Excel?" <-> "In Excel, how do I X?")."""
    m = _LEADING.match(text)
    if m:
        head = m.group("head")
        return (
            head[0].upper()
            + head[1:]
            + " "
            + m.group("tail")[0].lower()
            + m.group("tail")[1:]
            + "?"
        )
    m = _TRAILING.match(text)
    if m is None:
        return None
    head, tail = m.group("head"), m.group("tail")
    keep = head[:1].lower() if head[:2] != "I " else head[:1]
    return tail[0].upper() + tail[1:] + ", " + keep + head[1:] + "?"


def contraction(text: str, rng: random.Random) -> str | None:
    for long, short in (("What is", "What's"), ("do not", "don't"), ("is not", "isn't"),
                        ("can not", "can't"), ("It is", "It's"), ("I am", "I'm")):  # fmt: skip
        if long in text:
            return text.replace(long, short, 1)
        if short in text:
            return text.replace(short, long, 1)
    return None


Edit = Callable[[str, random.Random], str | None]
POSITIVE_EDITS: dict[str, Edit] = {
    "typo": typo, "casing": casing, "polite": polite, "numerals": numerals,
    "synonym": synonym, "opener": opener, "contraction": contraction, "reorder": reorder,
    "preamble": preamble,
}  # fmt: skip
SURFACE = ("typo", "casing", "polite", "opener", "preamble")


def negate(text: str, rng: random.Random) -> str | None:
    for pattern, replacement in NEGATIONS:
        if re.search(pattern, text):
            return re.sub(pattern, replacement, text, count=1)
    return None


def contrast(text: str, rng: random.Random) -> str | None:
    """One word swapped for one that asks something else (``frames.CONTRASTS``)."""
    options = [
        (old, new) for x, y in CONTRASTS for old, new in ((x, y), (y, x))
        if re.search(rf"\b{re.escape(old)}\b", text)
    ]  # fmt: skip
    if not options:
        return None
    old, new = rng.choice(options)
    return re.sub(rf"\b{re.escape(old)}\b", new, text, count=1)


def narrower(text: str, rng: random.Random) -> str | None:
    body = text.rstrip("?. ")
    return body + rng.choice(SCOPES) + "?"


# -- pairs --


def _positive(text: str, rng: random.Random, kinds: tuple[str, ...]) -> tuple[str, str] | None:
    for name in rng.sample(kinds, len(kinds)):
        out = POSITIVE_EDITS[name](text, rng)
        if out is not None and out != text:
            return name, out
    return None


def _slot_negatives(template: str, values: dict[str, str], rng: random.Random) -> list[
    tuple[str, dict[str, str]]
]:  # fmt: skip
    """(kind, changed slot values) for every meaning-changing slot edit that applies."""
    out = []
    present = slots(template)
    for name, default in present.items():
        value = values.get(name, default)
        kind = name[0]
        if kind in "ew":
            other = _sibling(value, rng)
            if other is not None:
                out.append(("entity" if kind == "e" else "sibling", {**values, name: other}))
        elif kind == "n":
            out.append(("number", {**values, name: _other_number(value, rng)}))
        elif kind == "l":
            other = _sibling(value, rng)
            if other is not None:
                out.append(("language", {**values, name: other}))
    if "a" in present and "b" in present:
        a, b = values.get("a", present["a"]), values.get("b", present["b"])
        out.append(("swap", {**values, "a": b, "b": a}))
    return out


def _fillings(template: str, rng: random.Random, count: int) -> list[dict[str, str]]:
    """The seed's own values, then ``count - 1`` with siblings substituted."""
    present = slots(template)
    out = [dict(present)]
    for _ in range(count - 1):
        values = {}
        for name, default in present.items():
            other = _sibling(default, rng) if name[0] in "ewl" else None
            values[name] = other if other is not None and rng.random() < 0.7 else default
        if "a" in present and "b" in present and rng.random() < 0.3:
            values["a"], values["b"] = values["b"], values["a"]
        out.append(values)
    return out


def seed_pairs(domain: str, index: int, seed: str, rng: random.Random, fillings: int) -> list[Pair]:
    question, reworded = (part.strip() for part in seed.split(";;"))
    group = f"{domain}-{index}"
    pairs: list[Pair] = []

    def add(a: str, b: str, same: bool, kind: str) -> None:
        if a != b:
            pairs.append(Pair(a, b, same, kind, group) if rng.random() < 0.5
                         else Pair(b, a, same, kind, group))  # fmt: skip

    for values in _fillings(question, rng, fillings):
        q, r = fill(question, values), fill(reworded, values)
        add(q, r, True, "reword")
        for _ in range(3):
            edit = _positive(q, rng, tuple(POSITIVE_EDITS))
            if edit:
                add(q, edit[1], True, edit[0])
        edit = _positive(r, rng, tuple(POSITIVE_EDITS))
        if edit:
            add(q, edit[1], True, "reword+" + edit[0])
        stacked = _positive(q, rng, SURFACE)
        if stacked:
            again = _positive(stacked[1], rng, tuple(POSITIVE_EDITS))
            if again:
                add(q, again[1], True, "stacked")
        for kind, changed in _slot_negatives(question, values, rng):
            other_q, other_r = fill(question, changed), fill(reworded, changed)
            add(q, other_q, False, kind)
            add(q, other_r, False, kind + "+reword")
            surface = _positive(other_q, rng, SURFACE)
            if surface:
                add(q, surface[1], False, kind + "+" + surface[0])
        for kind, edit_fn in (("negation", negate), ("scope", narrower), ("contrast", contrast)):
            out = edit_fn(rng.choice((q, r)), rng)
            if out is not None:
                add(q, out, False, kind)
    return pairs


def _add_written(pairs: list[Pair], rng: random.Random, edit_share: float, pair: Pair) -> None:
    """A pair of written questions, its second side given a surface edit (typo, casing,
    filler…) ``edit_share`` of the time, in a random order; identical sides are dropped."""
    b = pair.b
    if rng.random() < edit_share:
        edit = _positive(b, rng, SURFACE)
        if edit:
            b = edit[1]
    if pair.a != b:
        pairs.append(Pair(pair.a, b, pair.same, pair.kind, pair.group) if rng.random() < 0.5
                     else Pair(b, pair.a, pair.same, pair.kind, pair.group))  # fmt: skip


def frame_pairs(rng: random.Random) -> list[Pair]:
    """Pairs from ``frames.py``: two variants of one family about one topic are the same
    question; another family about the same topic, or the same family about another
    topic, is not. Either side may carry a surface edit. The group is the family, so a
    held-out family's wordings were never trained on."""
    pairs: list[Pair] = []

    def add(a: str, b: str, same: bool, kind: str, group: str) -> None:
        _add_written(pairs, rng, 0.4, Pair(a, b, same, kind, group))

    for kind, families in FRAMES.items():
        topics = TOPICS[kind]
        for index, variants in enumerate(families):
            group = f"frame-{kind}-{index}"
            for topic in topics:
                for i, j in combinations(range(len(variants)), 2):
                    add(variants[i].format(t=topic), variants[j].format(t=topic), True,
                        "frame-reword", group)  # fmt: skip
                for _ in range(2):
                    other = families[(index + 1 + rng.randrange(len(families) - 1)) % len(families)]
                    add(rng.choice(variants).format(t=topic), rng.choice(other).format(t=topic),
                        False, "frame-other-question", group)  # fmt: skip
                other_topic = rng.choice([t for t in topics if t != topic])
                mine = rng.choice(variants).format(t=topic)
                theirs = rng.choice(variants).format(t=other_topic)
                add(mine, theirs, False, "frame-other-topic", group)
                i, j = rng.randrange(len(variants)), rng.randrange(len(variants))
                changed = contrast(variants[j].format(t=topic), rng)
                if changed is not None:
                    kind_ = "frame-contrast" if i == j else "frame-contrast+reword"
                    add(variants[i].format(t=topic), changed, False, kind_, group)
    return pairs


def aspect_pairs(rng: random.Random) -> list[Pair]:
    """Pairs from ``frames.ASPECT_FRAMES``: two wordings with one topic and aspect are
    the same question; the same topic with another aspect is not (a wording of it
    chosen at random, so the negatives are as reworded as the positives). Grouped by
    frame for the held-out split."""
    pairs: list[Pair] = []

    def add(a: str, b: str, same: bool, kind: str, group: str) -> None:
        _add_written(pairs, rng, 0.3, Pair(a, b, same, kind, group))

    for index, (kind, wordings, aspects) in enumerate(ASPECT_FRAMES):
        group = f"aspect-{kind}-{index}"
        for topic in TOPICS[kind]:
            for aspect in rng.sample(aspects, 3):
                i, j = rng.sample(range(len(wordings)), 2)
                add(wordings[i].format(t=topic, x=aspect), wordings[j].format(t=topic, x=aspect),
                    True, "aspect-reword", group)  # fmt: skip
                other = rng.choice([x for x in aspects if x != aspect])
                k = rng.randrange(len(wordings))
                add(wordings[i].format(t=topic, x=aspect), wordings[k].format(t=topic, x=other),
                    False, "aspect-other", group)  # fmt: skip
    return pairs


def generate(seed: int = 18, fillings: int = 4) -> list[Pair]:
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for domain, questions in SEEDS.items():
        for index, text in enumerate(questions):
            pairs.extend(seed_pairs(domain, index, text, rng, fillings))
        # different questions from one domain: related, not the same
        for index, text in enumerate(questions):
            other = questions[(index + 1 + rng.randrange(len(questions) - 1)) % len(questions)]
            a = fill(text.split(";;")[0].strip(), {})
            b = fill(other.split(";;")[rng.randrange(2)].strip(), {})
            pairs.append(Pair(a, b, False, "other-question", f"{domain}-{index}"))
    pairs.extend(frame_pairs(rng))
    pairs.extend(aspect_pairs(rng))
    return pairs


def data_hash(pairs: list[Pair]) -> str:
    """sha256 of the pairs in order: the training report's and the model's data hash."""
    lines = (json.dumps([p.a, p.b, p.same, p.kind, p.group]) for p in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
