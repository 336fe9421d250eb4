"""Each verification rule: a near-miss it must refuse, and a rewording it must let
through. Pure functions: no model (the similarity is given)."""

from __future__ import annotations

import pytest

from watchllm_cache.verify import verify
from watchllm_cache.verify.rules import RULES
from watchllm_cache.verify.text import parse

pytestmark = pytest.mark.unit

HIGH = 0.99  # a similarity above any threshold: only the rules decide

REFUSED = [
    (
        "numbers",
        "Is the museum free for children under 12?",
        "Is the museum free for children under 16?",
    ),
    ("numbers", "Set an alarm for 6am", "Set an alarm for 6pm"),
    ("numbers", "How much protein is in two bananas?", "How much protein is in five bananas?"),
    ("numbers", "Are the ferries running in November?", "Are the ferries running in February?"),
    (
        "numbers",
        "What is the monthly repayment on a £90,000 loan?",
        "What is the monthly repayment on a £140,000 loan?",
    ),
    ("negation", "Which gym classes need a booking?", "Which gym classes don't need a booking?"),
    (
        "negation",
        "What if I return the parcel within a week?",
        "What if I dont return the parcel within a week?",
    ),
    (
        "negating_prefix",
        "How do I pin a message in the team chat?",
        "How do I unpin a message in the team chat?",
    ),
    (
        "negating_prefix",
        "Is the coastal trail accessible for wheelchairs?",
        "Is the coastal trail inaccessible for wheelchairs?",
    ),
    (
        "antonym",
        "What is the highest score in the league?",
        "What is the lowest score in the league?",
    ),
    (
        "antonym",
        "Which toppings are included in the large pizza?",
        "Which toppings are excluded from the large pizza?",
    ),
    (
        "antonym",
        "How do I switch on dark mode in the editor?",
        "How do I switch off dark mode in the editor?",
    ),
    ("antonym", "Does my phone plan work at home?", "Does my phone plan work abroad?"),
    ("language", "How do I read a CSV file in Python?", "How do I read a CSV file in Ruby?"),
    (
        "language",
        "Translate 'see you tomorrow' into German",
        "Translate 'see you tomorrow' into Italian",
    ),
    ("language", "How do I start a thread in Go?", "How do I start a thread in Rust?"),
    (
        "entity",
        "How do I renew a fishing licence in Wales?",
        "How do I renew a fishing licence in Ireland?",
    ),
    (
        "entity",
        "How long is the drive from Leeds to York?",
        "How long is the drive from Hull to York?",
    ),
    ("entity", "Which foods contain vitamin C?", "Which foods contain vitamin K?"),
    ("entity", "What can we do in Sintra, Lisbon?", "What can we do in Lisbon?"),
    (
        "direction",
        "How do I move my photos from my phone to my laptop?",
        "How do I move my photos from my laptop to my phone?",
    ),
    (
        "direction",
        "How do I switch my blog from WordPress to Ghost?",
        "How do I switch my blog from Ghost to WordPress?",
    ),
    (
        "direction",
        "How do I export a spreadsheet to CSV?",
        "How do I export a CSV to a spreadsheet?",
    ),
    ("direction", "Is tea healthier than coffee?", "Is coffee healthier than tea?"),
    ("word_order", "Should a teacher befriend a student?", "Should a student befriend a teacher?"),
    ("question_type", "Why is the library closed today?", "Is the library closed today?"),
    ("question_type", "When does the farmers market open?", "Where does the farmers market open?"),
    ("person", "How do I see my browsing history?", "How do I see someone's browsing history?"),
    ("person", "What does freedom mean to you?", "What does freedom mean?"),
    (
        "single_word",
        "How much does a carpet clean cost for a hallway?",
        "How much does a carpet clean cost for a staircase?",
    ),
    ("single_word", "How do I treat seasonal allergies?", "How do I treat allergies?"),
    (
        "single_word",
        "Is the lounge open to economy passengers?",
        "Is the lounge open to first class passengers?",
    ),
    ("narrower", "How do I learn to draw?", "How do I learn to draw portraits with charcoal?"),
]

ACCEPTED = [
    ("How do I cancel my gym membership?", "How can I cancel my gym membership?"),
    ("Where can I renew a library card?", "where can i renew a library card"),
    ("How do I crop an image in the photo editor?", "In the photo editor, how do I crop an image?"),
    (
        "How do I update the billing address on my account?",
        "Hi team, quick question: how do I update the biling address on my account? Thanks!",
    ),
    ("What is the quickest route to the stadium?", "What's the fastest route to the stadium?"),
    ("What tools do I need to fit a shelf?", "What tools are needed to fit a shelf?"),
    ("What time does the last ferry leave?", "When does the last ferry leave?"),
    ("How much does it cost to repaint a door?", "What does it cost to repaint a door?"),
    ("What's 20% of 350?", "What is twenty percent of 350?"),
    ("What are the pros and cons of Rust and Go?", "What are the cons and pros of Go and Rust?"),
    ("Why won't my printer print in colour?", "Why doesn't my printer print in colour?"),
    (
        "How do I get better at chess openings?",
        "What is the best way to get better at chess openings?",
    ),
]


@pytest.mark.parametrize(("rule", "question", "candidate"), REFUSED)
def test_rule_refuses_a_near_miss(rule: str, question: str, candidate: str) -> None:
    verdict = verify(question, candidate, HIGH, 0.8)
    assert not verdict.hit
    assert verdict.rule == rule, verdict.reason
    # and the other way round: the rules are symmetric
    assert verify(candidate, question, HIGH, 0.8).rule == rule


@pytest.mark.parametrize(("question", "candidate"), ACCEPTED)
def test_rewordings_pass_every_rule(question: str, candidate: str) -> None:
    assert verify(question, candidate, HIGH, 0.8).hit
    assert verify(candidate, question, HIGH, 0.8).hit


def test_every_rule_has_a_refusal_case() -> None:
    assert {rule.__name__ for rule in RULES} <= {rule for rule, _, _ in REFUSED}


def test_threshold_comes_first_and_is_explained() -> None:
    verdict = verify("How do I cancel my gym membership?", "How can I cancel it?", 0.7, 0.8)
    assert (verdict.hit, verdict.rule) == (False, "threshold")
    assert verdict.reason == "similarity 0.700 < 0.800"
    assert verify("a", "a", 0.8, 0.8).hit  # at the threshold: accepted


def test_parse_reads_numbers_dates_names_and_question_type() -> None:
    p = parse("Hi! Can I book 2 tickets for £1,250 on Friday at 3pm with British Gas?")
    assert p.numbers == {"2", "1250", "friday", "3pm"}
    assert {"british", "gas"} <= p.entities
    assert p.question == "yesno"
    assert parse("whats the boiling point?").question == "what"
    assert parse("How many eggs?").question == "quantity"
    assert parse("I don't know. Why is it cold?").negations == 1


def test_parse_survives_odd_input() -> None:
    for text in ("", "???", "🙂🙂", "-" * 1000, "a" * 5000):
        p = parse(text)
        assert verify(text, text, 1.0, 0.5).hit
        assert isinstance(p.content, frozenset)


def test_direction_refuses_a_swapped_bare_target_after_to() -> None:
    from watchllm_cache.verify import verify

    swapped = verify("Convert 100 dollars to euros", "Convert 100 euros to dollars", 0.97, 0.9)
    assert not swapped.hit and swapped.rule == "direction"
    into = verify("How do I convert metres into feet?", "How do I convert feet into metres?",
                  0.99, 0.9)  # fmt: skip
    assert not into.hit and into.rule == "direction"
    planets = verify("Does Mars have a bigger diameter than Earth?",
                     "Does Earth have a bigger diameter than Mars?", 0.99, 0.9)  # fmt: skip
    assert not planets.hit and planets.rule == "direction"  # "Mars" is not "mar(ch)s"
    same = verify("How to download videos from YouTube?",
                  "How can I download videos from YouTube?", 0.95, 0.9)  # fmt: skip
    assert same.rule != "direction"
