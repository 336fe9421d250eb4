"""Word lists the verification rules use: general English, not tuned to any data set.

Every list is written as stems where a rule compares stems (Snowball English stemmer,
as ``text.stem`` applies it), so "includes"/"included"/"including" all meet as "includ".
"""

from __future__ import annotations

# Words that carry no content for the comparison: function words, pronouns, auxiliaries,
# greetings and fillers. Question words live in QUESTION_WORDS (a rule of their own);
# quantifiers that change the answer ("most", "least", "only", "all") are NOT here.
STOPWORDS = frozenset(
    """
    a an the and or but if of to in on at by for with from about into onto as
    is are was were be been being am do does did doing done have has had having
    i me my mine myself we us our ours ourselves you your yours yourself he him his
    she her hers it its itself they them their theirs themselves this that these those
    there here one ones someone somebody something anyone anybody anything
    can could would should will shall may might must
    so very really just also too quite pretty please thanks thank cheers hi hello hey
    hiya morning um uh uhh er erm like actually basically exactly literally well ok okay
    oh yeah yes guys folks some any such then vs versus etc
    get getting got go going goes tell know let want need way possible able
    s t d ll m re ve
    """.split()
)

# Words that add nothing a cached answer would change for, when only one side has them
# (adverbs of frequency and emphasis, "steps"/"process" as in "the steps for ...").
WEAK_WORDS = frozenset(
    """usually typically generally normally currently exactly actually really ever still
    even specifically particularly basically simply perhaps maybe possibly kindly exact
    specific particular certain overall mainly step steps process procedure method
    approach obtain acquire receive request available availability offer much many""".split()
)

# Greetings, thanks and apologies around a question ("Hi team, quick question: ...").
FILLER_PHRASES = (
    r"quick question", r"quick one", r"silly question", r"stupid question",
    r"sorry to bother you", r"sorry", r"just wondering", r"i was wondering",
    r"i'm wondering", r"wondering", r"thanks in advance", r"many thanks",
    r"thank you(?: very much| so much)?", r"thanks(?: a lot| so much)?", r"cheers",
    r"hi there", r"hello there", r"hey there", r"hi team", r"hello team", r"hi all",
    r"please help", r"any help appreciated", r"help please",
)  # fmt: skip

# Plain synonyms in questions people ask a support desk or an assistant. Each group
# reads as one word for the comparison ("price" = "cost"). Kept small and general on
# purpose: a wrong group makes false hits.
SYNONYMS = (
    "buy purchase", "price cost", "begin start commence", "finish end",
    "quit stop cease", "fast quick rapid speedy", "fastest quickest",
    "big large huge", "biggest largest", "small little tiny", "smallest tiniest",
    "shop store", "movie film", "phone mobile cellphone", "fix repair mend",
    "choose select pick", "help assist", "make create", "need require",
    "use utilise utilize", "show display", "delete remove erase",
    "change modify alter update switch amend", "book reserve", "booking reservation",
    "allowed permitted", "allow permit", "answer reply respond", "error mistake",
    "kid kids child children", "info information details", "photo picture pic image",
    "website site webpage", "email e-mail mail", "login signin logon",
    "salary wage", "road street", "holiday vacation", "luggage baggage",
    "flat apartment", "lift elevator", "bill invoice", "rubbish trash garbage",
    "purpose aim goal objective", "benefit advantage", "drawback disadvantage",
    "opinion view think thought", "typical average", "quote quotation",
    "dispute challenge", "consult refer", "avoid prevent", "earlier previous prior",
    "mute silence", "submit send", "type kind variety",
    "find locate", "automobile car", "cancel scrap",
)  # fmt: skip

QUESTION_WORDS = frozenset("what which who whom whose when where why how".split())

# Auxiliaries that open a yes/no question.
AUXILIARIES = frozenset(
    """is are was were am do does did can could should would will shall may might must
    has have had""".split()
)

# Negation markers (after contractions are expanded: "don't" -> "do not").
NEGATIONS = frozenset("not no never none nobody nothing nowhere neither nor without non".split())

# Prefixes that turn a word into its opposite ("lock"/"unlock", "legal"/"illegal").
NEGATING_PREFIXES = ("un", "non", "dis", "in", "im", "il", "ir", "de", "anti")

# Contractions written without the apostrophe, as people type them.
BARE_CONTRACTIONS = {
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "isnt": "is not",
    "arent": "are not", "wasnt": "was not", "werent": "were not", "cant": "can not",
    "cannot": "can not", "wont": "will not", "couldnt": "could not",
    "shouldnt": "should not", "wouldnt": "would not", "havent": "have not",
    "hasnt": "has not", "hadnt": "had not", "aint": "is not", "whats": "what is",
    "hows": "how is", "wheres": "where is", "whos": "who is", "thats": "that is",
    "theres": "there is", "im": "i am", "ive": "i have", "youre": "you are",
}  # fmt: skip
IRREGULAR_NEGATIONS = {"won't": "will not", "can't": "can not", "shan't": "shall not"}

# Number words; "one" is left out on purpose: it is far more often a pronoun
# ("how does one ...") than a count.
NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16",
    "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
    "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
    "million": "1000000", "billion": "1000000000", "dozen": "12", "twice": "x2",
    "double": "x2", "triple": "x3", "half": "1/2", "quarter": "1/4",
    "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
}  # fmt: skip

# Points in time a question can be about: they must be the same on both sides.
DATE_WORDS = frozenset(
    """january february march april may june july august september october november
    december jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday
    thursday friday saturday sunday weekday weekdays weekend weekends today tomorrow
    yesterday tonight morning afternoon evening night spring summer autumn fall winter
    am pm""".split()
)
# "may", "march", "fall", "morning" are dates only when capitalised or next to a number;
# text.py checks that for these.
AMBIGUOUS_DATE_WORDS = frozenset("may march fall morning second am pm sat sun wed".split())

# Natural and programming languages: a question about one is not about another.
LANGUAGES = frozenset(
    """english french spanish german italian portuguese dutch russian chinese mandarin
    cantonese japanese korean arabic hindi urdu bengali punjabi tamil telugu marathi
    gujarati kannada malayalam turkish greek polish swedish norwegian danish finnish
    hebrew persian farsi thai vietnamese indonesian malay swahili latin welsh irish
    ukrainian czech hungarian romanian
    python java javascript typescript kotlin swift rust go golang ruby php perl scala
    haskell clojure elixir erlang lua julia matlab fortran cobol pascal dart bash
    powershell sql mysql postgres postgresql sqlite html css c c++ c# cpp csharp
    objective-c r""".split()
)
# Language names that are also everyday words ("go about", "rust", "swift"): they
# count only when written with a capital ("Go", "Rust", "R").
AMBIGUOUS_LANGUAGES = frozenset("go r c swift rust ruby dart julia pascal lua perl".split())

# Opposites, as plain words (text.py stems them). A candidate that has one side of a
# pair where the question has the other answers the opposite question.
ANTONYM_PAIRS = """
best worst; most least; more less; more fewer; maximum minimum; max min; highest lowest;
higher lower; high low; increase decrease; increased decreased; rise fall; gain loss;
profit loss; include exclude; included excluded; accept decline; accept reject;
approved rejected; approve reject; allowed forbidden; allow forbid; allow ban;
enable disable; pass fail; success failure; successful unsuccessful; win lose; won lost;
buy sell; bought sold; buying selling; import export; upload download; input output;
send receive; push pull; lend borrow; debit credit; income expense; before after;
early late; earlier later; first last; start end; start stop; begin end; open close;
on off; up down; in out; inside outside; above below; over under; add remove;
add delete; join leave; enter exit; arrive depart; arrival departure; hot cold;
warm cool; cheap expensive; cheapest expensive; easy hard; easiest hardest; fast slow;
fastest slowest; big small; biggest smallest; large small; largest smallest; long short;
longest shortest; old new; oldest newest; young old; heavy light; positive negative;
advantage disadvantage; benefit drawback; pros cons; true false; right wrong;
legal illegal; safe unsafe; safe dangerous; healthy unhealthy; male female; men women;
man woman; boy girl; husband wife; father mother; son daughter; brother sister;
king queen; light dark; black white; left right; north south; east west; full part;
full empty; employed unemployed; employed self; employee employer; landlord tenant;
buyer seller; teacher student; doctor patient; parent child; adult child; adults kids;
members non; public private; internal external; domestic international;
local international; rural urban; present past; past future; mandatory optional;
compulsory optional; required optional; same different; similar different;
agree disagree; like dislike; love hate; accept refuse; support oppose; minor major;
junior senior; natural artificial; real fake; wet dry; summer winter; day night;
morning evening; weekday weekend; home abroad; cash card; online offline; lock unlock;
encrypt decrypt; compress decompress; activate deactivate; subscribe unsubscribe;
mute unmute; hide show; ascending descending; private public; remote office
"""

# Prepositions whose object has a role: "from A to B" is not "from B to A", "A better
# than B" is not "B better than A". Symmetric links ("and", "or", "vs") are not here.
# Each maps to its role: "into"/"onto"/"towards" play the role of "to".
DIRECTIONAL = {
    "to": "to", "into": "to", "onto": "to", "toward": "to", "towards": "to",
    "from": "from", "than": "than",
}  # fmt: skip
# Words that may stand between a directional preposition and its object.
DETERMINERS = frozenset(
    "the a an my your his her its our their this that these those some any".split()
)

# Whose question it is: a third party ("someone's messages") is not me ("my messages").
THIRD_PARTY = frozenset("someone somebody anyone anybody someones somebodys others".split())
FIRST_PERSON_OBJECTS = frozenset("me my myself mine".split())
# "... mean to you?", "... for me?": the question asks for a personal answer.
PERSONAL_OBJECTS = frozenset("me you us".split())
SYMMETRIC_LINKS = frozenset("and or vs versus &".split())
