"""Four embedded synthetic tasks, generated offline with exactly known answers.

* ``arith_word``: arithmetic word problems (shopping, rates, sharing, discounts, ...) with integer answers,
  scored like GSM8K.
* ``mc_reasoning``: four-option multiple-choice questions (largest/smallest number, alphabetical order,
  day-of-week arithmetic, unit conversion, the odd one out among multiples) with the gold letter spread
  evenly over A-D.
* ``mental_math``: one-step arithmetic (times tables, small sums and differences), scored like GSM8K: where
  tiny models are right part of the time, and not on the same questions.
* ``world_capitals``: a country's capital, a capital's country, a country's continent (a fixed table of 80
  countries), scored by cover exact match: knowledge a base model and an instruction model hold differently.

Generation is deterministic in ``seed``. Each problem falls in one split (train/val/test = 80/10/10) by a hash
of its canonical text, so the splits never share a problem whatever the seeds; within a call no problem is
repeated. Each :class:`SyntheticItem` keeps its parameters so that the answer can be checked independently.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from fusion.tasks.formatting import LETTERS, format_multiple_choice

NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kemi", "Liam",
         "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yara")  # fmt: skip
PRONOUN = {n: ("she" if n in {"Ava", "Chloe", "Emma", "Grace", "Isla", "Kemi", "Maya", "Olga", "Priya", "Rosa",
                              "Uma", "Wen", "Yara"} else "he") for n in NAMES}  # fmt: skip
ITEMS = ("marbles", "stickers", "pencils", "apples", "cards", "stamps", "shells", "beads", "cookies", "coins")
GOODS = ("notebooks", "mugs", "books", "scarves", "plants", "lamps", "puzzles", "hats")
PRODUCTS = ("bottles", "bolts", "bricks", "toys", "boxes", "chairs")
WORDS = ("anchor", "basket", "candle", "desert", "engine", "falcon", "garden", "harbor", "island", "jacket",
         "kettle", "ladder", "meadow", "needle", "orange", "pepper", "quartz", "rabbit", "saddle", "tunnel",
         "umbrella", "velvet", "walnut", "yogurt", "zipper", "castle", "canyon", "carpet", "bridge", "branch",
         "marble", "market", "pillow", "planet", "silver", "signal", "timber", "ticket", "window", "winter",
         "banana", "barrel", "button", "cotton", "dragon", "forest", "galaxy", "helmet", "magnet", "mirror")  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# (larger unit, smaller unit, how many smaller units in one larger one)
UNITS = (("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("hours", "minutes", 60),
         ("minutes", "seconds", 60), ("kilograms", "grams", 1000), ("days", "hours", 24), ("weeks", "days", 7),
         ("liters", "milliliters", 1000), ("feet", "inches", 12), ("yards", "feet", 3))  # fmt: skip

SPLIT_OF_BUCKET = ("train",) * 8 + ("val", "test")


def split_of(key: str) -> str:
    """The split a problem belongs to (80/10/10), from a hash of its canonical text."""
    return SPLIT_OF_BUCKET[int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10]


@dataclass(frozen=True)
class SyntheticItem:
    kind: str
    key: str  # canonical problem text: decides uniqueness and split
    query: str
    answer: str  # the ground truth: a number, or the gold letter
    params: dict = field(default_factory=dict)
    options: tuple[str, ...] = ()


def _collect(
    n: int, seed: int, split: str | None, makers: list[Callable[[random.Random], tuple[str, str, dict]]]
) -> list[tuple[str, str, dict]]:
    """Draw (kind, key, params) problems round-robin over ``makers`` until ``n`` distinct ones (in ``split`` if
    given) are found."""
    rng = random.Random(f"{seed}")
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(
                f"could not draw {n} distinct problems (got {len(out)}); the space is too small"
            )
        kind, key, params = makers[len(out) % len(makers)](rng)
        if key in seen or (split is not None and split_of(key) != split):
            continue
        seen.add(key)
        out.append((kind, key, params))
    return out


# ---- arith_word ------------------------------------------------------------------------------------------


def _buy_give(rng: random.Random) -> tuple[str, str, dict]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, packs, per = rng.randint(5, 60), rng.randint(2, 9), rng.randint(3, 12)
    give = rng.randint(1, a)
    q = (f"{name} has {a} {item}. {PRONOUN[name].capitalize()} buys {packs} packs of {item} with {per} in each "
         f"pack, then gives {give} {item} to a friend. How many {item} does {name} have now?")  # fmt: skip
    return "buy_give", q, {"a": a, "packs": packs, "per": per, "give": give, "answer": a + packs * per - give}


def _change(rng: random.Random) -> tuple[str, str, dict]:
    name, goods = rng.choice(NAMES), rng.choice(GOODS)
    count, price = rng.randint(2, 9), rng.randint(2, 25)
    bill = next(b for b in (20, 50, 100, 200, 500) if b > count * price)
    q = (f"{name} buys {count} {goods} that cost ${price} each and pays with a ${bill} bill. How many dollars "
         f"of change does {PRONOUN[name]} get back?")  # fmt: skip
    return "change", q, {"count": count, "price": price, "bill": bill, "answer": bill - count * price}


def _rate(rng: random.Random) -> tuple[str, str, dict]:
    product = rng.choice(PRODUCTS)
    rate, hours, days = rng.randint(3, 40), rng.randint(2, 12), rng.randint(2, 7)
    q = (f"A machine makes {rate} {product} per hour. It runs for {hours} hours a day. How many {product} does it "
         f"make in {days} days?")  # fmt: skip
    return "rate", q, {"rate": rate, "hours": hours, "days": days, "answer": rate * hours * days}


def _share(rng: random.Random) -> tuple[str, str, dict]:
    item = rng.choice(ITEMS)
    friends, each = rng.randint(2, 8), rng.randint(3, 15)
    lose = rng.randint(1, each - 1)
    q = (f"{friends} friends share {friends * each} {item} equally. Then each friend gives away {lose} of their "
         f"{item}. How many {item} does each friend have left?")  # fmt: skip
    return "share", q, {"friends": friends, "total": friends * each, "lose": lose, "answer": each - lose}


def _discount(rng: random.Random) -> tuple[str, str, dict]:
    goods = rng.choice(GOODS)
    price, pct = 20 * rng.randint(2, 30), rng.choice((10, 20, 25, 50, 75))
    q = f"A shop sells {goods} for ${price} each. This week they are {pct}% off. What is the sale price in dollars?"
    return "discount", q, {"price": price, "pct": pct, "answer": price * (100 - pct) // 100}


def _legs(rng: random.Random) -> tuple[str, str, dict]:
    cows, hens = rng.randint(2, 30), rng.randint(2, 40)
    q = f"A farm has {cows} cows and {hens} chickens. How many legs do these animals have in total?"
    return "legs", q, {"cows": cows, "hens": hens, "answer": 4 * cows + 2 * hens}


def _ages(rng: random.Random) -> tuple[str, str, dict]:
    name = rng.choice(NAMES)
    age, gap, years = rng.randint(4, 40), rng.randint(1, 12), rng.randint(2, 20)
    q = (f"{name} is {age} years old and {PRONOUN[name]} has a brother who is {gap} years older. What will the sum "
         f"of their ages be in {years} years?")  # fmt: skip
    return "ages", q, {"age": age, "gap": gap, "years": years, "answer": 2 * age + gap + 2 * years}


ARITH_MAKERS = [_buy_give, _change, _rate, _share, _discount, _legs, _ages]


def make_arith_word(n: int, seed: int = 0, split: str | None = None) -> list[SyntheticItem]:
    """``n`` distinct arithmetic word problems (in ``split`` if given) with integer answers."""
    drawn = _collect(n, seed, split, ARITH_MAKERS)
    return [SyntheticItem(kind, key, key, str(p["answer"]), p) for kind, key, p in drawn]


# ---- mc_reasoning ----------------------------------------------------------------------------------------


def _largest(rng: random.Random) -> tuple[str, str, dict]:
    which = rng.choice(("largest", "smallest"))
    if rng.random() < 0.5:
        values = rng.sample(range(100, 1000), 4)
        shown = [str(v) for v in values]
    else:  # decimals that share leading digits, so the comparison needs care
        base = rng.randint(1, 9)
        values = [base + v / 1000 for v in rng.sample(range(1, 1000), 4)]
        shown = [f"{v:.3f}".rstrip("0").rstrip(".") for v in values]
    pick = (max if which == "largest" else min)(range(4), key=lambda i: values[i])
    wrong = [s for i, s in enumerate(shown) if i != pick]
    q = f"Which of these numbers is the {which}?"
    params = {"question": q, "which": which, "correct": shown[pick], "wrong": wrong}
    return "compare", q + " " + " ".join(sorted(shown)), params


def _alphabetical(rng: random.Random) -> tuple[str, str, dict]:
    words = rng.sample(WORDS, 4)
    which = rng.choice(("first", "last"))
    correct = min(words) if which == "first" else max(words)
    q = f"Which of these words comes {which} in alphabetical order?"
    params = {"question": q, "which": which, "correct": correct, "wrong": [w for w in words if w != correct]}
    return "alphabetical", q + " " + " ".join(sorted(words)), params


def _weekday(rng: random.Random) -> tuple[str, str, dict]:
    today, ahead = rng.randrange(7), rng.randint(2, 400)
    correct = DAYS[(today + ahead) % 7]
    wrong = rng.sample([d for d in DAYS if d != correct], 3)
    q = f"Today is {DAYS[today]}. What day of the week will it be {ahead} days from today?"
    params = {"question": q, "today": DAYS[today], "ahead": ahead, "correct": correct, "wrong": wrong}
    return "weekday", q, params


def _unit(rng: random.Random) -> tuple[str, str, dict]:
    big, small, factor = rng.choice(UNITS)
    x = rng.randint(2, 25)
    value = x * factor
    candidates = {value * 10, value + factor, value - factor, x * 10, x + factor}
    candidates |= {x * f for _, _, f in UNITS}
    candidates = sorted(c for c in candidates if c > 0 and c != value)
    wrong = [str(c) for c in rng.sample(candidates, 3)]
    q = f"How many {small} are there in {x} {big}?"
    return "unit", q, {"question": q, "x": x, "factor": factor, "big": big, "small": small, "correct": str(value),
                       "wrong": wrong}


def _odd_one_out(rng: random.Random) -> tuple[str, str, dict]:
    k = rng.randint(3, 12)
    multiples = [k * m for m in rng.sample(range(2, 31), 3)]
    odd = rng.choice([v for v in range(2 * k, 30 * k) if v % k and v not in multiples])
    q = f"Three of these numbers are multiples of {k}. Which one is not?"
    key = q + " " + " ".join(str(v) for v in sorted([*multiples, odd]))
    return (
        "odd_one_out",
        key,
        {"question": q, "k": k, "correct": str(odd), "wrong": [str(v) for v in multiples]},
    )


MC_MAKERS = [_largest, _alphabetical, _weekday, _unit, _odd_one_out]


def make_mc_reasoning(n: int, seed: int = 0, split: str | None = None) -> list[SyntheticItem]:
    """``n`` distinct four-option questions; the gold letters are a shuffled, evenly filled list over A-D."""
    drawn = _collect(n, seed, split, MC_MAKERS)
    rng = random.Random(f"{seed}\x1fletters")
    golds = [LETTERS[i % 4] for i in range(n)]
    rng.shuffle(golds)
    items = []
    for (kind, key, p), gold in zip(drawn, golds, strict=True):
        wrong = list(p["wrong"])
        rng.shuffle(wrong)
        pos = LETTERS.index(gold)
        options = wrong[:pos] + [p["correct"]] + wrong[pos:]
        items.append(SyntheticItem(kind, key, format_multiple_choice(p["question"], options), gold, p,
                                   tuple(options)))  # fmt: skip
    return items


# ---- mental_math -----------------------------------------------------------------------------------------


def _times(rng: random.Random) -> tuple[str, str, dict]:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    q = rng.choice(("What is {a} times {b}?", "What is {a} multiplied by {b}?", "What is {a} x {b}?")).format(a=a, b=b)
    return "times", q, {"a": a, "b": b, "op": "times", "answer": a * b}


def _add(rng: random.Random) -> tuple[str, str, dict]:
    a, b = rng.randint(10, 60), rng.randint(2, 9)
    q = rng.choice(("What is {a} + {b}?", "What is {a} plus {b}?", "Add {b} to {a}. What do you get?")).format(a=a, b=b)
    return "add", q, {"a": a, "b": b, "op": "plus", "answer": a + b}


def _subtract(rng: random.Random) -> tuple[str, str, dict]:
    a, b = rng.randint(10, 60), rng.randint(2, 9)
    q = rng.choice(("What is {a} - {b}?", "What is {a} minus {b}?", "Take {b} away from {a}. What is left?")).format(
        a=a, b=b)
    return "subtract", q, {"a": a, "b": b, "op": "minus", "answer": a - b}


MENTAL_MAKERS = [_times, _add, _subtract]


def make_mental_math(n: int, seed: int = 0, split: str | None = None) -> list[SyntheticItem]:
    """``n`` distinct one-step arithmetic questions (in ``split`` if given) with integer answers."""
    drawn = _collect(n, seed, split, MENTAL_MAKERS)
    return [SyntheticItem(kind, key, key, str(p["answer"]), p) for kind, key, p in drawn]


# ---- world_capitals --------------------------------------------------------------------------------------

# (country, capital, continent): unambiguous names only (one capital, one continent)
COUNTRIES = (
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"), ("Italy", "Rome", "Europe"),
    ("Spain", "Madrid", "Europe"), ("Portugal", "Lisbon", "Europe"), ("Greece", "Athens", "Europe"),
    ("Norway", "Oslo", "Europe"), ("Sweden", "Stockholm", "Europe"), ("Finland", "Helsinki", "Europe"),
    ("Denmark", "Copenhagen", "Europe"), ("Poland", "Warsaw", "Europe"), ("Austria", "Vienna", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("Ireland", "Dublin", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Czech Republic", "Prague", "Europe"), ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"),
    ("Serbia", "Belgrade", "Europe"), ("Croatia", "Zagreb", "Europe"), ("Ukraine", "Kyiv", "Europe"),
    ("Iceland", "Reykjavik", "Europe"), ("Estonia", "Tallinn", "Europe"), ("Latvia", "Riga", "Europe"),
    ("Lithuania", "Vilnius", "Europe"), ("Slovakia", "Bratislava", "Europe"), ("Albania", "Tirana", "Europe"),
    ("Japan", "Tokyo", "Asia"), ("China", "Beijing", "Asia"), ("India", "New Delhi", "Asia"),
    ("South Korea", "Seoul", "Asia"), ("Thailand", "Bangkok", "Asia"), ("Vietnam", "Hanoi", "Asia"),
    ("Indonesia", "Jakarta", "Asia"), ("Philippines", "Manila", "Asia"), ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Pakistan", "Islamabad", "Asia"), ("Bangladesh", "Dhaka", "Asia"), ("Nepal", "Kathmandu", "Asia"),
    ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"), ("Saudi Arabia", "Riyadh", "Asia"),
    ("Afghanistan", "Kabul", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"), ("Qatar", "Doha", "Asia"),
    ("Jordan", "Amman", "Asia"), ("Lebanon", "Beirut", "Asia"), ("Syria", "Damascus", "Asia"),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"), ("Nigeria", "Abuja", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"), ("Ghana", "Accra", "Africa"), ("Morocco", "Rabat", "Africa"),
    ("Algeria", "Algiers", "Africa"), ("Tunisia", "Tunis", "Africa"), ("Senegal", "Dakar", "Africa"),
    ("Uganda", "Kampala", "Africa"), ("Zimbabwe", "Harare", "Africa"), ("Angola", "Luanda", "Africa"),
    ("Sudan", "Khartoum", "Africa"), ("Mali", "Bamako", "Africa"), ("Somalia", "Mogadishu", "Africa"),
    ("Canada", "Ottawa", "North America"), ("Mexico", "Mexico City", "North America"),
    ("Cuba", "Havana", "North America"), ("Jamaica", "Kingston", "North America"),
    ("Panama", "Panama City", "North America"), ("Guatemala", "Guatemala City", "North America"),
    ("Argentina", "Buenos Aires", "South America"), ("Chile", "Santiago", "South America"),
    ("Peru", "Lima", "South America"), ("Colombia", "Bogota", "South America"),
    ("Venezuela", "Caracas", "South America"), ("Ecuador", "Quito", "South America"),
    ("Uruguay", "Montevideo", "South America"), ("Paraguay", "Asuncion", "South America"),
    ("Australia", "Canberra", "Oceania"), ("New Zealand", "Wellington", "Oceania"), ("Fiji", "Suva", "Oceania"),
)  # fmt: skip


def _capital_of(rng: random.Random) -> tuple[str, str, dict]:
    country, capital, _ = rng.choice(COUNTRIES)
    q = f"What is the capital city of {country}?"
    return "capital_of", q, {"country": country, "answer": capital}


def _country_of(rng: random.Random) -> tuple[str, str, dict]:
    country, capital, _ = rng.choice(COUNTRIES)
    q = f"{capital} is the capital city of which country?"
    return "country_of", q, {"capital": capital, "answer": country}


def _continent_of(rng: random.Random) -> tuple[str, str, dict]:
    country, _, continent = rng.choice(COUNTRIES)
    q = f"On which continent is {country}?"
    return "continent_of", q, {"country": country, "answer": continent}


CAPITAL_MAKERS = [_capital_of, _country_of, _continent_of]


def make_world_capitals(n: int, seed: int = 0, split: str | None = None) -> list[SyntheticItem]:
    """``n`` distinct questions about the countries of :data:`COUNTRIES` (in ``split`` if given)."""
    drawn = _collect(n, seed, split, CAPITAL_MAKERS)
    return [SyntheticItem(kind, key, key, p["answer"], p) for kind, key, p in drawn]


# ---- the Task.generate interface: (n, seed, split) -> [(query, ground_truth)] ---------------------------


def generate_arith_word(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str]]:
    return [(it.query, it.answer) for it in make_arith_word(n, seed, split)]


def generate_mc_reasoning(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str]]:
    return [(it.query, it.answer) for it in make_mc_reasoning(n, seed, split)]


def generate_mental_math(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str]]:
    return [(it.query, it.answer) for it in make_mental_math(n, seed, split)]


def generate_world_capitals(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str]]:
    return [(it.query, it.answer) for it in make_world_capitals(n, seed, split)]


# ---- worked solutions (the training targets of domain experts; never shown with a query of the same split) -----


def _arith_steps(kind: str, p: dict) -> str:
    if kind == "buy_give":
        bought, total = p["packs"] * p["per"], p["a"] + p["packs"] * p["per"]
        return (f"Bought: {p['packs']} x {p['per']} = {bought}. Total: {p['a']} + {bought} = {total}. "
                f"After giving {p['give']} away: {total} - {p['give']} = {p['answer']}.")
    if kind == "change":
        cost = p["count"] * p["price"]
        return f"Cost: {p['count']} x ${p['price']} = ${cost}. Change: ${p['bill']} - ${cost} = ${p['answer']}."
    if kind == "rate":
        per_day = p["rate"] * p["hours"]
        return f"Per day: {p['rate']} x {p['hours']} = {per_day}. In {p['days']} days: {per_day} x {p['days']} = {p['answer']}."
    if kind == "share":
        each = p["total"] // p["friends"]
        return (f"Each friend gets {p['total']} / {p['friends']} = {each}. "
                f"After giving {p['lose']} away: {each} - {p['lose']} = {p['answer']}.")
    if kind == "discount":
        off = p["price"] - p["answer"]
        return f"Discount: {p['pct']}% of ${p['price']} = ${off}. Sale price: ${p['price']} - ${off} = ${p['answer']}."
    if kind == "legs":
        c, h = 4 * p["cows"], 2 * p["hens"]
        return f"Cows: {p['cows']} x 4 = {c}. Chickens: {p['hens']} x 2 = {h}. Total: {c} + {h} = {p['answer']}."
    if kind == "ages":
        brother = p["age"] + p["gap"]
        return (f"The brother is {p['age']} + {p['gap']} = {brother}. In {p['years']} years: "
                f"({p['age']} + {p['years']}) + ({brother} + {p['years']}) = {p['answer']}.")
    raise ValueError(f"no worked solution for arith_word kind {kind!r}")


def _mc_steps(kind: str, p: dict) -> str:
    if kind == "compare":
        return f"Comparing the numbers, the {p['which']} is {p['correct']}."
    if kind == "alphabetical":
        return f"In alphabetical order, {p['correct']} comes {p['which']}."
    if kind == "weekday":
        weeks, rest = divmod(p["ahead"], 7)
        return (f"{p['ahead']} days is {weeks} weeks and {rest} days; {rest} days after {p['today']} is "
                f"{p['correct']}.")
    if kind == "unit":
        return f"One of the {p['big']} is {p['factor']} {p['small']}, so {p['x']} x {p['factor']} = {p['correct']}."
    if kind == "odd_one_out":
        v, k = int(p["correct"]), p["k"]
        return f"{v} / {k} leaves a remainder of {v % k}, so {v} is not a multiple of {k}; the others are."
    raise ValueError(f"no worked solution for mc_reasoning kind {kind!r}")


def solved_arith_word(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str, str]]:
    """``(query, ground truth, worked solution)``; the solution ends as the prompt asks (``Answer: N``)."""
    return [(it.query, it.answer, f"{_arith_steps(it.kind, it.params)}\nAnswer: {it.answer}")
            for it in make_arith_word(n, seed, split)]


def solved_mental_math(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str, str]]:
    """``(query, ground truth, worked solution)``: the one step in words, then ``Answer: N``."""
    return [(it.query, it.answer, f"{it.params['a']} {it.params['op']} {it.params['b']} is {it.answer}.\n"
                                  f"Answer: {it.answer}") for it in make_mental_math(n, seed, split)]


def solved_mc_reasoning(n: int, seed: int = 0, split: str | None = None) -> list[tuple[str, str, str]]:
    """``(query, gold letter, worked solution)``; the solution names the option and ends with ``Answer: X``."""
    out = []
    for it in make_mc_reasoning(n, seed, split):
        out.append((it.query, it.answer, f"{_mc_steps(it.kind, it.params)} That is option {it.answer}.\n"
                                         f"Answer: {it.answer}"))
    return out
