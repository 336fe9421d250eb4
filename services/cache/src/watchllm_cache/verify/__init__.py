"""Verification: is a cached answer to the candidate question an answer to this one?

A similarity threshold alone is not safe (FACTS.md): with all-MiniLM-L6-v2, pairs that
differ only in a number, a negation, a name or a direction score as high as real
paraphrases. So a candidate must clear the cosine threshold AND every rule below; the
first rule that objects refuses the hit, and its reason goes back to the gateway (and
into logs and metrics). The rules compare two parsed questions (``text.parse``: tokens,
contractions expanded, greetings and thanks dropped, Snowball stems, a small synonym
table) and are deliberately plain, so every refusal can be explained to an operator.
The examples below are made up for illustration; ``tests/cache/test_verify.py`` holds
one refused and several accepted cases per rule.

1. ``threshold``: cosine below the project's (or the request's) threshold.
2. ``numbers``: numbers, amounts, times and dates must be the same set ("under 12" vs
   "under 16", "6am" vs "6pm", "in November" vs "in February", "two" vs "five").
3. ``negation``: an odd number of negations (not, no, never, without, n't...) on one
   side only ("need a booking" vs "don't need a booking").
4. ``negating_prefix``: a word and its negated form ("pin"/"unpin",
   "accessible"/"inaccessible").
5. ``antonym``: one side has a word, the other its opposite, from a table of general
   English opposites ("highest"/"lowest", "included"/"excluded", "on"/"off").
6. ``language``: both name a natural or programming language, not the same one
   ("in Python" vs "in Ruby", "into German" vs "into Italian").
7. ``entity``: a name (capitalised mid-sentence, an acronym, a single capital letter)
   on one side is missing from the other ("in Wales" vs "in Ireland", "vitamin C" vs
   "vitamin K", "Sintra, Lisbon" vs "Lisbon"); a name shortened from the front ("Ada
   Lovelace" -> "Lovelace") and derived forms ("Norway" -> "Norwegian") are allowed.
8. ``direction``: the objects of directional prepositions swapped ("from my phone to my
   laptop" vs "from my laptop to my phone", "a spreadsheet to CSV" vs "a CSV to a
   spreadsheet", "tea healthier than coffee" vs "coffee healthier than tea").
9. ``word_order``: short questions with the same words in other roles ("Should a teacher
   befriend a student?" vs "Should a student befriend a teacher?").
10. ``question_type``: different kinds of answer asked for ("why" vs a yes/no question,
    "when" vs "where", "can I" vs "how do I"); "what", "which", "how" and statements
    mix freely, and "what time" is "when".
11. ``person``: whose question it is ("my history" vs "someone's history") or a personal
    answer asked for ("What does freedom mean to you?" vs "What does freedom mean?").
12. ``single_word``: all content words shared but one on either side (or one against
    two: "economy" vs "first class"), the rest hardly reworded ("carpet clean for a
    hallway" vs "... for a staircase", "seasonal allergies" vs "allergies"): in a
    near-identical question the words that differ are its point. Typos and spelling
    variants are paired off first.
13. ``narrower``: one side is the other plus two or more content words, hardly reworded
    ("learn to draw" vs "learn to draw portraits with charcoal").

Known gaps (the false hits that remain, see services/cache/EVAL.md): role swaps in
longer questions, substitutions inside long rewordings, tense ("did" vs "would"), and
pairs the data labels different although they ask the same thing.

Failure modes: none at run time: parsing is total (odd input parses to empty sets) and
the rules are pure functions (~0.1 ms a candidate).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from watchllm_cache.verify.features import StatesFn
from watchllm_cache.verify.learned import PairModel, score, veto
from watchllm_cache.verify.rules import RULES
from watchllm_cache.verify.text import Parsed, parse


@dataclass(frozen=True, slots=True)
class Verdict:
    hit: bool
    rule: str | None = None  # the rule that refused
    reason: str | None = None  # what it saw, for logs and the gateway's answer


_cached_parse = lru_cache(maxsize=16_384)(parse)


def parsed(text: str) -> Parsed:
    return _cached_parse(text)


def verify(question: str, candidate: str, similarity: float, threshold: float) -> Verdict:
    """Hit, or refuse with the first rule that objects (rules are in ``RULES`` order)."""
    if similarity < threshold:
        return Verdict(False, "threshold", f"similarity {similarity:.3f} < {threshold:.3f}")
    q, c = parsed(question), parsed(candidate)
    for rule in RULES:
        reason = rule(q, c)
        if reason is not None:
            return Verdict(False, rule.__name__, f"{rule.__name__}: {reason}")
    return Verdict(True)


def verify_learned(
    question: str, candidate: str, similarity: float, threshold: float, model: PairModel,
    states: StatesFn | None = None,
) -> Verdict:  # fmt: skip
    """Hit when the cosine clears ``threshold`` (the candidate floor), no veto rule
    objects and the pair model's probability clears its threshold (``learned.py``)."""
    if similarity < threshold:
        return Verdict(False, "threshold", f"similarity {similarity:.3f} < {threshold:.3f}")
    q, c = parsed(question), parsed(candidate)
    vetoed = veto(q, c)
    if vetoed is not None:
        return Verdict(False, vetoed[0], f"{vetoed[0]}: {vetoed[1]}")
    p = score(model, q, c, similarity, states)
    if p < model.threshold:
        return Verdict(False, "learned", f"learned: p {p:.3f} < {model.threshold:.3f}")
    return Verdict(True)
