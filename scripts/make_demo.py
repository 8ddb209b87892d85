"""Write poolhead's bundled demo STS set (sts-train.csv, sts-dev.csv, sts-test.csv) into src/poolhead/data/demo;
deterministic. A maintainer's script, not part of the package (poolhead only reads the files).

    python scripts/make_demo.py

Sentence pairs are built from templates written for this project: a scene (who, doing what, where or when), a news
item (a made-up company and a claim), a weather report, or a sign. Each kind of pair gets a score band:
paraphrase 4.2-5, paraphrase missing a detail 3.4-4.4, same scene or story with one part changed 1.2-3.6,
only the setting shared 0.6-1.6, unrelated 0-0.6. Scores are then drawn inside the band (steps of 0.2).
Files use the STS Benchmark layout: tab-separated, no header, genre, file, year, id, score, sentence1, sentence2.
"""

from __future__ import annotations

import random
from pathlib import Path

SEED, SIZES = 20250101, {"train": 300, "dev": 100, "test": 100}
DEMO_DIR = Path(__file__).resolve().parents[1] / "src" / "poolhead" / "data" / "demo"

# (phrase, paraphrase) pairs. People: (subject, paraphrase, plural?).
PEOPLE = [("A man", "A guy", False), ("A woman", "A lady", False), ("A boy", "A young boy", False),
          ("A girl", "A little girl", False), ("An old man", "An elderly man", False),
          ("A young woman", "A woman in her twenties", False), ("A chef", "A cook", False),
          ("Two friends", "A pair of friends", True), ("A teenager", "A teen", False),
          ("Some children", "A few kids", True), ("A police officer", "A policewoman", False)]
DOINGS = [("playing the guitar", "strumming a guitar"), ("cutting an onion", "slicing an onion"),
          ("riding a bicycle", "riding a bike"), ("reading a newspaper", "reading the paper"),
          ("cooking rice", "making some rice"), ("painting a wall", "putting paint on a wall"),
          ("talking on the phone", "speaking on a phone"), ("peeling a potato", "taking the skin off a potato"),
          ("playing the piano", "playing a piano"), ("washing a car", "cleaning a car with soap and water"),
          ("jogging", "going for a run"), ("drinking coffee", "having a cup of coffee"),
          ("typing on a laptop", "typing on a notebook computer"), ("carrying a large box", "holding a big box"),
          ("feeding a cat", "giving food to a cat"), ("writing a letter", "writing a note by hand")]
SETTINGS = [("in the park", "at the park"), ("in the morning", "early in the day"), ("at night", "late at night"),
            ("in the rain", "while it is raining"), ("outside", "outdoors"), ("in the kitchen", "in a kitchen"),
            ("on a sunny afternoon", "on a bright afternoon"), ("near the river", "close to the river"),
            ("in a small room", "in a tiny room")]
ANIMAL_SETTINGS = [("in the park", "at the park"), ("in the morning", "early in the day"),
                   ("at night", "late at night"), ("in the rain", "while it is raining"),
                   ("near the river", "close to the river"), ("on a farm", "at a farm")]
ANIMALS = [("A dog", "A pet dog"), ("A cat", "A house cat"), ("A horse", "A brown horse"), ("A puppy", "A young dog"),
           ("A small bird", "A tiny bird"), ("A goat", "A farm goat")]
ANIMAL_DOINGS = [("running across a field", "running through a field"), ("chasing a ball", "running after a ball"),
                 ("sleeping on a sofa", "asleep on a couch"), ("drinking water from a bowl", "drinking from a bowl"),
                 ("jumping over a fence", "leaping over a fence"), ("playing in the snow", "playing in snow"),
                 ("eating grass", "grazing on grass")]
COMPANIES = ["Northwind Bank", "Harbor Airlines", "Greenfield Motors", "Bluestone Foods", "Crescent Telecom",
             "Maple Rail", "Silverline Shipping", "Redwood Books"]
# (claim, paraphrase, a claim about the same thing that says otherwise)
CLAIMS = [("reported higher profits for the {q} quarter", "said its profits rose in the {q} quarter",
           "reported lower profits for the {q} quarter"),
          ("plans to hire {n} new workers", "will add {n} jobs", "plans to cut {n} jobs"),
          ("opened a new office in {city}", "has launched an office in {city}", "closed its office in {city}"),
          ("raised its prices this year", "increased what it charges this year", "cut its prices this year"),
          ("agreed to buy a smaller rival", "reached a deal to take over a smaller competitor",
           "called off a deal to buy a smaller rival")]
QUARTERS, COUNTS = ["first", "second", "third", "fourth"], ["200", "500", "1,200", "3,000"]
CITIES = ["Lisbon", "Osaka", "Denver", "Nairobi", "Krakow", "Perth", "Quebec", "Bergen"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEATHER = [("Heavy snow closed roads in {c} on {d}.", "Roads in {c} were shut by heavy snowfall on {d}.",
            "Heavy snow closed roads in {c}."),
           ("Strong winds knocked down trees in {c} on {d}.", "Trees in {c} were blown over by strong winds on {d}.",
            "Strong winds knocked down trees in {c}."),
           ("A heat wave pushed temperatures above 40 degrees in {c} on {d}.",
            "Temperatures in {c} rose above 40 degrees during a heat wave on {d}.",
            "It was hotter than 40 degrees in {c}."),
           ("Floods forced families to leave their homes in {c} on {d}.",
            "Families in {c} had to leave their homes because of flooding on {d}.",
            "Families in {c} left their homes because of floods.")]
PLACES = ["shop", "cafe", "library", "museum", "bakery", "pharmacy"]
SIGNS = ["open", "closed", "back in ten minutes", "cash only", "no dogs allowed"]


def scene(rng: random.Random) -> tuple[str, str, float]:
    """A pair of scenes about people or animals, and its score band's centre."""
    if rng.random() < 0.7:
        settings = SETTINGS
        who, doing, where = rng.choice(PEOPLE), rng.choice(DOINGS), rng.choice(settings)
    else:
        settings = ANIMAL_SETTINGS
        who, doing, where = rng.choice(ANIMALS) + (False,), rng.choice(ANIMAL_DOINGS), rng.choice(settings)
    verb = lambda p: "are" if p[2] else "is"  # noqa: E731
    kind = rng.choice(["para", "para", "drop", "where", "doing", "who", "setting", "unrelated"])
    say = lambda w, d, s, alt=(0, 0, 0): f"{w[alt[0]]} {verb(w)} {d[alt[1]]} {s[alt[2]]}."  # noqa: E731
    first = say(who, doing, where)
    other = lambda pool, x: rng.choice([p for p in pool if p[0] != x[0]])  # noqa: E731
    if kind == "para":
        return first, say(who, doing, where, (1, 1, 1)), 4.6
    if kind == "drop":
        return first, f"{who[1]} {verb(who)} {doing[1]}.", 3.8
    if kind == "where":
        return first, say(who, doing, other(settings, where), (1, 0, 0)), 3.0
    pool = DOINGS if doing in DOINGS else ANIMAL_DOINGS
    if kind == "doing":
        return first, say(who, other(pool, doing), where), 2.0
    if kind == "who":
        whos = PEOPLE if who in PEOPLE else [a + (False,) for a in ANIMALS]
        return first, say(other(whos, who), doing, other(settings, where)), 2.4
    if kind == "setting":
        someone = other(PEOPLE, who) if who in PEOPLE else rng.choice(PEOPLE)
        return first, say(someone, other(DOINGS, doing) if doing in DOINGS else rng.choice(DOINGS), where), 1.0
    return first, news(rng)[0], 0.2


def news(rng: random.Random) -> tuple[str, str, float]:
    company, claim = rng.choice(COMPANIES), rng.choice(CLAIMS)
    fill = dict(q=rng.choice(QUARTERS), n=rng.choice(COUNTS), city=rng.choice(CITIES))
    said = lambda c, i: f"{c} {claim[i].format(**fill)}."  # noqa: E731
    kind = rng.choice(["para", "para", "opposite", "company", "unrelated"])
    if kind == "para":
        return said(company, 0), said(company, 1), 4.6
    if kind == "opposite":
        return said(company, 0), said(company, 2), 2.2
    if kind == "company":
        return said(company, 0), said(rng.choice([c for c in COMPANIES if c != company]), 0), 1.6
    return said(company, 0), weather(rng)[0], 0.2


def weather(rng: random.Random) -> tuple[str, str, float]:
    event, city, day = rng.choice(WEATHER), rng.choice(CITIES), rng.choice(DAYS)
    first = event[0].format(c=city, d=day)
    kind = rng.choice(["para", "para", "drop", "city", "day", "other"])
    if kind == "para":
        return first, event[1].format(c=city, d=day), 4.6
    if kind == "drop":
        return first, event[2].format(c=city), 4.0
    if kind == "city":
        return first, event[0].format(c=rng.choice([c for c in CITIES if c != city]), d=day), 2.6
    if kind == "day":
        return first, event[1].format(c=city, d=rng.choice([d for d in DAYS if d != day])), 3.2
    return first, rng.choice([e for e in WEATHER if e != event])[0].format(c=city, d=day), 1.2


def sign(rng: random.Random) -> tuple[str, str, float]:
    """Pairs with quoted words in them (the STS files are unquoted: a `"` is just a character)."""
    place, words = rng.choice(PLACES), rng.choice(SIGNS)
    first = f'A sign on the {place} door says "{words}".'
    kind = rng.choice(["para", "words", "place"])
    if kind == "para":
        return first, f'The {place} door has a sign reading "{words}".', 4.6
    if kind == "words":
        return first, f'A sign on the {place} door says "{rng.choice([s for s in SIGNS if s != words])}".', 1.8
    return first, f'A sign on the {rng.choice([p for p in PLACES if p != place])} door says "{words}".', 2.8


def make(rng: random.Random, n: int) -> list[tuple[str, str, str, float]]:
    """n distinct pairs (genre, sentence1, sentence2, score), scores jittered within +-0.4 of the band centre."""
    pairs, seen = [], set()
    makers = [("demo-captions", scene)] * 6 + [("demo-news", news)] * 2 + [("demo-news", weather)] * 2 + \
             [("demo-signs", sign)]
    while len(pairs) < n:
        genre, maker = rng.choice(makers)
        a, b, centre = maker(rng)
        if rng.random() < 0.5:
            a, b = b, a
        if a == b or (a, b) in seen or (b, a) in seen:
            continue
        seen.add((a, b))
        score = min(5.0, max(0.0, round((centre + rng.choice([-0.4, -0.2, 0.0, 0.2, 0.4])) * 5) / 5))
        pairs.append((genre, a, b, score))
    return pairs


def main(folder: Path = DEMO_DIR) -> None:
    rng = random.Random(SEED)
    pairs = make(rng, sum(SIZES.values()))
    start = 0
    for split, n in SIZES.items():
        lines = [f"{g}\tpoolhead-demo\t2025\t{i + 1:04d}\t{s:.3f}\t{a}\t{b}\n"
                 for i, (g, a, b, s) in enumerate(pairs[start:start + n])]
        (folder / f"sts-{split}.csv").write_text("".join(lines), encoding="utf-8")
        start += n
        print(f"wrote {folder / f'sts-{split}.csv'}: {n} pairs")


if __name__ == "__main__":
    main()
