# ruff: noqa: E501 - one frame variant a line reads better than wrapped strings
"""Question frames for the pair verifier's training data: same topic, other question.

Written here for this purpose (no public data set). A frame family is one question
about a topic ``{t}``, written several ways, short and long; two variants of one family
about one topic are the same question (positives with heavy rewording, which the edits
in ``generate.py`` never produce), two families about one topic are different questions
on the same subject (negatives of the kind a forum's "related questions" are), and one
family about two topics is another question too. Topics come in kinds, so that every
frame reads naturally with every topic of its kind.
"""

from __future__ import annotations

TOPICS: dict[str, tuple[str, ...]] = {
    "skill": (
        "Python programming",
        "the guitar",
        "photography",
        "chess",
        "public speaking",
        "machine learning",
        "Spanish",
        "digital marketing",
        "swimming",
        "drawing",
        "web development",
        "data science",
        "touch typing",
        "yoga",
        "video editing",
        "calculus",
        "meditation",
        "knitting",
        "sign language",
        "woodworking",
    ),
    "place": (
        "Japan",
        "New York",
        "Iceland",
        "Thailand",
        "Paris",
        "Canada",
        "Brazil",
        "London",
        "Bali",
        "Vietnam",
        "Berlin",
        "Mexico",
        "Scotland",
        "Morocco",
    ),
    "concept": (
        "blockchain",
        "inflation",
        "climate change",
        "quantum computing",
        "the stock market",
        "black holes",
        "artificial intelligence",
        "vaccination",
        "democracy",
        "cryptocurrency",
        "compound interest",
        "evolution",
        "nuclear power",
        "the immune system",
        "social media",
    ),
}

FRAMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "skill": (
        (
            "What is the best way to learn {t}?",
            "How should I go about learning {t} if I'm starting from zero?",
            "What's the most effective approach to learning {t} from scratch?",
            "I'd like to learn {t}. What is the best way to go about it?",
        ),
        (
            "How can I learn {t} quickly?",
            "What is the fastest way to pick up {t}?",
            "Is there a way to get good at {t} in a short amount of time?",
        ),
        (
            "Can I learn {t} on my own without a teacher?",
            "Is it possible to teach myself {t}?",
            "Is self-study enough to learn {t}, or do I need lessons?",
        ),
        (
            "How long does it take to learn {t}?",
            "How many months does it usually take to become decent at {t}?",
            "What is a realistic time frame for learning {t}?",
        ),
        (
            "What are the best books for learning {t}?",
            "Which books would you recommend to someone who wants to learn {t}?",
            "Can you recommend some good books on {t}?",
        ),
        (
            "What are the best online courses for {t}?",
            "Which online course should I take to learn {t}?",
            "What is a good website for learning {t} online?",
        ),
        (
            "What jobs can I get if I know {t}?",
            "Can {t} lead to a career, and what kind of jobs?",
            "What careers are open to someone who is good at {t}?",
        ),
        (
            "Am I too old to start learning {t}?",
            "Is it too late to take up {t} as an adult?",
            "Can someone still get good at {t} if they only start later in life?",
        ),
        (
            "How do I teach {t} to my kids?",
            "What is a good way to teach children {t}?",
            "How can I get my children started with {t}?",
        ),
        (
            "Why is {t} so hard?",
            "What makes {t} so difficult to master?",
            "Why do so many people struggle with {t}?",
        ),
        (
            "What are the benefits of learning {t}?",
            "Why should I learn {t}?",
            "What are the advantages of knowing {t}?",
        ),
        (
            "What mistakes do beginners make in {t}?",
            "What errors do people new to {t} usually make?",
            "Which beginner mistakes should I avoid when starting {t}?",
        ),
        (
            "How can I get better at {t}?",
            "What can I do to improve my {t}?",
            "I've been doing {t} for a while; how do I keep improving?",
        ),
        (
            "How much does it cost to get into {t}?",
            "What is the cost of getting started with {t}?",
            "Is {t} an expensive thing to start?",
        ),
        (
            "How do I stay motivated while learning {t}?",
            "How can I keep myself motivated to practise {t}?",
            "What helps you stay motivated to keep going with {t}?",
        ),
        (
            "How do I find a good {t} teacher?",
            "Where can I find a good tutor for {t}?",
            "How should I choose someone to teach me {t}?",
        ),
    ),
    "place": (
        (
            "When is the best time to visit {t}?",
            "What time of year is best for a trip to {t}?",
            "Which month would you recommend for visiting {t}?",
        ),
        (
            "What are the best things to do in {t}?",
            "What should I not miss when I visit {t}?",
            "What are the must-see attractions in {t}?",
        ),
        (
            "Is {t} expensive for tourists?",
            "How expensive is it to travel around {t}?",
            "Would a trip to {t} cost a lot of money?",
        ),
        (
            "Is {t} safe for tourists?",
            "How safe is it to travel to {t}?",
            "Should I worry about my safety when visiting {t}?",
        ),
        (
            "What is it like to live in {t}?",
            "How is everyday life for people who live in {t}?",
            "What is life in {t} really like for residents?",
        ),
        (
            "How can I move to {t} to work?",
            "How do I get a job in {t} as a foreigner?",
            "What does it take to relocate to {t} for work?",
        ),
        (
            "What food is {t} famous for?",
            "What are the traditional dishes of {t}?",
            "Which local dishes should I try in {t}?",
        ),
        (
            "What is the best way to get around {t}?",
            "How do tourists usually travel around {t}?",
            "What's the easiest way to get from place to place in {t}?",
        ),
        (
            "What is the history of {t}?",
            "Can you give me a brief history of {t}?",
            "How did {t} become what it is today?",
        ),
        (
            "Is {t} a good place to travel alone?",
            "Can I travel to {t} solo?",
            "Would you recommend {t} to someone travelling on their own?",
        ),
        (
            "How many days should I spend in {t}?",
            "How long should a first trip to {t} be?",
            "What's the right number of days for a visit to {t}?",
        ),
        (
            "What language do people speak in {t}?",
            "What language is spoken in {t}?",
            "Which language do the locals in {t} speak?",
        ),
        (
            "What souvenirs should I bring back from {t}?",
            "What are good gifts to buy in {t}?",
            "What should I buy in {t} to take home?",
        ),
    ),
    "concept": (
        (
            "What is {t}?",
            "Can someone explain {t} in simple terms?",
            "What exactly is meant by {t}?",
        ),
        (
            "How does {t} work?",
            "What is the mechanism behind {t}?",
            "Can you explain how {t} actually works?",
        ),
        ("Why is {t} important?", "Why does {t} matter?", "What makes {t} so important?"),
        (
            "What is the future of {t}?",
            "Where is {t} heading in the next ten years?",
            "How will {t} change in the coming decade?",
        ),
        (
            "What are the pros and cons of {t}?",
            "What are the advantages and disadvantages of {t}?",
            "What is good and what is bad about {t}?",
        ),
        (
            "What are the dangers of {t}?",
            "What risks does {t} pose?",
            "In what ways can {t} be harmful?",
        ),
        (
            "How would you explain {t} to a child?",
            "What's a simple way to explain {t} to a kid?",
            "How do I describe {t} so that my children understand it?",
        ),
        (
            "How does {t} affect everyday life?",
            "What impact does {t} have on ordinary people?",
            "In what ways does {t} touch people's daily lives?",
        ),
        (
            "Where can I learn more about {t}?",
            "What are good resources for learning about {t}?",
            "Which books or websites explain {t} well?",
        ),
        (
            "What are common misconceptions about {t}?",
            "What do most people get wrong about {t}?",
            "What are the biggest myths about {t}?",
        ),
        (
            "Who came up with {t}?",
            "Who first developed the idea of {t}?",
            "Which person is credited with {t}?",
        ),
        (
            "Is {t} overrated?",
            "Is {t} overhyped?",
            "Do people give {t} more credit than it deserves?",
        ),
    ),
}

# Sentences people put before a question; they change nothing a cached answer says.
PREAMBLES = (
    "I'm a complete beginner. ", "I've been wondering about this for a while. ",
    "My friend and I were arguing about this. ", "This might be a silly question, but ",
    "I have read a few articles and I'm still confused. ", "Asking for a school project: ",
    "I keep seeing this come up online. ", "Honest question here. ",
    "I've searched everywhere and can't find a clear answer. ", "Something I've always wanted to know: ",
)  # fmt: skip

# One word that changes the question when put in another's place (general English;
# both directions are used): minimal pairs inside a question, alone or inside a
# rewording, the "same words, one different" kind of related question.
CONTRASTS: tuple[tuple[str, str], ...] = (
    ("learn", "teach"), ("learning", "teaching"), ("buy", "sell"), ("start", "stop"),
    ("beginners", "experts"), ("beginner", "expert"), ("children", "adults"),
    ("kids", "teenagers"), ("first", "second"), ("visit", "leave"), ("live", "study"),
    ("work", "retire"), ("history", "future"), ("fastest", "safest"),
    ("easiest", "cheapest"), ("before", "after"), ("send", "receive"), ("read", "write"),
    ("upload", "download"), ("summer", "winter"), ("online", "in person"),
    ("students", "teachers"), ("jobs", "hobbies"), ("job", "degree"), ("books", "films"),
    ("tourists", "students"), ("food", "music"), ("language", "religion"),
    ("month", "day of the week"), ("days", "weeks"), ("alone", "with children"),
    ("safe", "legal"), ("cost", "take"), ("benefits", "side effects"),
    ("mistakes", "habits"), ("motivated", "focused"), ("dangers", "uses"),
    ("invented", "banned"), ("important", "controversial"), ("myths", "facts"),
    ("home", "work"), ("weight", "muscle"), ("money", "time"), ("oven", "microwave"),
)  # fmt: skip

# Frames with an aspect ``{x}`` as well as the topic: the same wording with another
# aspect is another question that shares almost every word ("the best age to learn
# chess" / "the best app to learn chess"), inside a rewording or not. Each entry is
# (topic kind, wordings, aspects).
ASPECT_FRAMES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("skill", ("What is the best {x} to learn {t}?", "Which {x} would you recommend for learning {t}?", "For someone who wants to learn {t}, what {x} is the best choice?"),
     ("age", "app", "book", "website", "time of day", "country", "teacher")),
    ("skill", ("What {x} do I need to start {t}?", "Which {x} should I get before I begin {t}?", "To get started with {t}, what {x} is required?"),
     ("equipment", "software", "skills", "qualifications", "books", "budget")),
    ("skill", ("Is {t} a good {x}?", "Would {t} make a good {x}?", "Do you think {t} is worth it as a {x}?"),
     ("career", "hobby", "side business", "university degree", "retirement activity", "activity for kids")),
    ("skill", ("How do {x} use {t}?", "In what ways do {x} make use of {t}?", "What do {x} use {t} for?"),
     ("companies", "scientists", "teachers", "doctors", "artists", "athletes")),
    ("concept", ("Why is {t} so {x}?", "What makes {t} so {x}?", "How come {t} is so {x}?"),
     ("popular", "expensive", "controversial", "hard to understand", "important", "misunderstood")),
    ("concept", ("What do {x} think of {t}?", "How do {x} feel about {t}?", "What is the view of {x} on {t}?"),
     ("economists", "scientists", "teenagers", "doctors", "older people", "politicians")),
    ("concept", ("What is the relationship between {t} and {x}?", "How is {t} related to {x}?", "In what way are {t} and {x} connected?"),
     ("politics", "health", "education", "the economy", "religion", "art")),
    ("concept", ("What are some good {x} about {t}?", "Can you recommend good {x} about {t}?", "Which {x} about {t} are worth my time?"),
     ("books", "documentaries", "podcasts", "YouTube channels", "courses", "novels")),
    ("concept", ("How do I explain {t} to {x}?", "What's a good way to explain {t} to {x}?", "How would you describe {t} to {x}?"),
     ("a child", "my parents", "my boss", "a beginner", "a scientist", "my students")),
    ("concept", ("How do {x} use {t}?", "In what ways do {x} make use of {t}?", "What do {x} use {t} for?"),
     ("companies", "scientists", "governments", "schools", "criminals", "banks")),
    ("place", ("What is the best {x} in {t}?", "Which {x} in {t} would you recommend?", "If you had to pick one {x} in {t}, which would it be?"),
     ("neighbourhood to stay", "museum", "beach", "restaurant", "hiking trail", "market", "nightclub")),
    ("place", ("How much does {x} cost in {t}?", "What is the cost of {x} in {t}?", "How expensive is {x} in {t}?"),
     ("renting a flat", "eating out", "public transport", "a hotel room", "healthcare", "university")),
    ("place", ("Is {t} a good place for {x}?", "Would you recommend {t} for {x}?", "How good is {t} for {x}?"),
     ("families", "students", "retirees", "digital nomads", "a honeymoon", "a stag party")),
    ("place", ("What is the best way to meet {x} in {t}?", "How can I meet {x} in {t}?", "Where do people go to meet {x} in {t}?"),
     ("locals", "other travellers", "expats", "a partner", "business contacts")),
)  # fmt: skip
