"""A synthetic multi-hop world (ours): invented people, places, works and organisations, and
compositional questions over them, so a student small enough to train on a laptop CPU can learn
the retrieve-then-reason skill, and no pretrained model knows the answers.

    records = generate(WorldSettings(seed=0), "train")   # HotpotQA-format dicts

The world: `countries` countries; `cities` cities, each in one country; `organisations`
companies, each based in one city and founded in a year; `people` people, each born in one city
in a year and working for one organisation; `works` novels, films and albums, each by one person.
Every entity has one short paragraph (title = its name) whose sentences state its facts:

    Vorelan Quist: "Vorelan Quist was born in Tamsk in 1874. Vorelan Quist works for Dravo Works."
    Tamsk:         "Tamsk is a city in the country of Olvenia."

Questions follow chains of those relations (2 to 4 hops, like MuSiQue's compositions) or compare
two entities (like HotpotQA's comparison questions):

    2 hops  In which country was Vorelan Quist born?        person -> city -> country
    3 hops  In which country was the author of The Glass Harbor born?
    4 hops  In which country is the employer of the author of The Glass Harbor based?
    compare Who was born first, Vorelan Quist or Maro Tesh?

A later hop's paragraph names an entity the question does not (names are invented), and shares
with the question only words that every paragraph of its kind has ("city", "country"), so it is
found by retrieving with what an earlier step said, not with the question; each question's
context adds `distractors` paragraphs that share words with it (works with a title word in
common, people born in the same city as a gold entity), as HotpotQA's distractors do.
Records are HotpotQA's format (`_id, question, answer, type, level, supporting_facts, context`),
so the silver teacher, BM25, step-wise data, judge and metrics treat the world as any dataset.
Test questions start from anchors (the entity a question names) that no training question names.

Deterministic: the same settings give the same bytes (`world_bytes`), on any machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from steper_bench.recipe import WorldConfig
from steper_bench.sources.base import DatasetSpec, records_jsonl, titled_context_question

KINDS = ("2", "3", "4", "comparison")

# The settings are the recipe's own section (source.world: seed, sizes, hop_mix, distractors; all
# in the build hash), so defaults and validation live in one place.
WorldSettings = WorldConfig


# -- names -------------------------------------------------------------------------------------------

_ONSETS = ["b", "d", "dr", "f", "g", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "th", "v", "z", "sh", "br", "kel"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "sk", "nd"]
_ADJECTIVES = ["Glass", "Silent", "Crimson", "Hollow", "Iron", "Paper", "Velvet", "Amber", "Winter", "Broken",
               "Golden", "Quiet", "Salt", "Copper", "Northern", "Last", "Hidden", "Painted", "Burning", "Pale"]
_NOUNS = ["Harbor", "Lantern", "Orchard", "Mirror", "Garden", "Bridge", "Tower", "River", "Letter", "Crown",
          "Engine", "Meadow", "Island", "Archive", "Compass", "Season", "Theatre", "Window", "Voyage", "Clock"]
_ORG_SUFFIXES = ["Works", "Holdings", "Records", "Press", "Studios", "Foundry", "Group", "Mills"]
_WORK_KINDS = [("novel", "written by"), ("film", "directed by"), ("album", "recorded by")]


def _names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        k = rng.randint(*syllables)
        name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(k)) + rng.choice(_CODAS)
        name = name.capitalize()
        if name not in taken and len(name) >= 4:
            taken.add(name)
            out.append(name)
    return out


# -- the world ---------------------------------------------------------------------------------------


@dataclass
class Entity:
    name: str
    kind: str  # country | city | organisation | person | work
    facts: dict = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)  # its paragraph, one fact per sentence


@dataclass
class World:
    entities: dict[str, Entity]
    people: list[str]
    works: list[str]
    organisations: list[str]
    by_word: dict[str, list[str]] = field(default_factory=dict)  # name word -> entities whose name has it
    born_in: dict[str, list[str]] = field(default_factory=dict)  # city -> people born there

    def __post_init__(self):
        for name, e in self.entities.items():
            for w in name.split():
                self.by_word.setdefault(w, []).append(name)
            if e.kind == "person":
                self.born_in.setdefault(e.facts["city"], []).append(name)


def build_world(s: WorldSettings) -> World:
    rng = random.Random(s.seed)
    taken: set[str] = set()
    countries = _names(rng, s.countries, (2, 3), taken)
    cities = _names(rng, s.cities, (1, 2), taken)
    first = _names(rng, max(40, s.people // 6), (1, 2), taken)
    last = _names(rng, max(40, s.people // 6), (2, 2), taken)
    people: list[str] = []
    while len(people) < s.people:
        name = f"{rng.choice(first)} {rng.choice(last)}"
        if name not in taken:
            taken.add(name)
            people.append(name)
    organisations = [f"{n} {rng.choice(_ORG_SUFFIXES)}" for n in _names(rng, s.organisations, (2, 2), taken)]
    titles = sorted({f"The {a} {b}" for a in _ADJECTIVES for b in _NOUNS})
    works = rng.sample(titles, min(s.works, len(titles)))

    ent: dict[str, Entity] = {}
    for c in countries:
        ent[c] = Entity(c, "country", sentences=[f"{c} is a kingdom with its own language and currency."])
    for c in cities:
        country = rng.choice(countries)
        ent[c] = Entity(c, "city", {"country": country}, [f"{c} is a city in the country of {country}."])
    for o in organisations:
        city, year = rng.choice(cities), rng.randint(1800, 1990)
        ent[o] = Entity(o, "organisation", {"city": city, "year": year},
                        [f"{o} is a company based in {city}.", f"{o} was founded in {year}."])
    for p in people:
        city, year, org = rng.choice(cities), rng.randint(1850, 1999), rng.choice(organisations)
        ent[p] = Entity(p, "person", {"city": city, "year": year, "employer": org},
                        [f"{p} was born in {city} in {year}.", f"{p} works for {org}."])
    for w in works:
        (kind, verb), author = rng.choice(_WORK_KINDS), rng.choice(people)
        article = "an" if kind[0] in "aeiou" else "a"
        ent[w] = Entity(w, "work", {"author": author, "kind": kind}, [f"{w} is {article} {kind} {verb} {author}."])
    return World(ent, people, works, organisations)


# -- questions ---------------------------------------------------------------------------------------

# A chain question: (hops, anchor kind, wording, relations followed from the anchor).
# Each relation is (fact key, index of the sentence stating it in the entity's paragraph).
CHAINS = [
    ("2", "person", "In which country was {a} born?", [("city", 0), ("country", 0)]),
    ("2", "person", "In which city is the company that employs {a} based?", [("employer", 1), ("city", 0)]),
    ("2", "work", "In which city was the creator of {a} born?", [("author", 0), ("city", 0)]),
    ("3", "work", "In which country was the creator of {a} born?", [("author", 0), ("city", 0), ("country", 0)]),
    ("3", "person", "In which country is the company that employs {a} based?",
     [("employer", 1), ("city", 0), ("country", 0)]),
    ("3", "work", "In which city is the employer of the creator of {a} based?",
     [("author", 0), ("employer", 1), ("city", 0)]),
    ("4", "work", "In which country is the employer of the creator of {a} based?",
     [("author", 0), ("employer", 1), ("city", 0), ("country", 0)]),
]
COMPARISONS = [
    ("person", "Who was born first, {a} or {b}?", 0),
    ("organisation", "Which company was founded first, {a} or {b}?", 1),
]


@dataclass(frozen=True)
class Draft:
    kind: str  # "2" | "3" | "4" | "comparison"
    anchors: tuple[str, ...]
    question: str
    answer: str
    support: tuple[tuple[str, int], ...]  # (title, sentence index), in reasoning order


def _chain(world: World, anchor: str, wording: str, relations, kind: str) -> Draft:
    support, here = [], anchor
    for key, sentence in relations:
        support.append((here, sentence))
        here = world.entities[here].facts[key]
    return Draft(kind, (anchor,), wording.format(a=anchor), here, tuple(support))


def _comparison(world: World, a: str, b: str, wording: str, sentence: int) -> Draft | None:
    ya, yb = world.entities[a].facts["year"], world.entities[b].facts["year"]
    if ya == yb:
        return None
    return Draft("comparison", (a, b), wording.format(a=a, b=b), a if ya < yb else b, ((a, sentence), (b, sentence)))


def _drafts(world: World, kind: str, rng: random.Random) -> list[Draft]:
    """Every question of one kind the world allows (comparisons: a seeded set of pairs)."""
    if kind != "comparison":
        pools = {"person": world.people, "work": world.works}
        return [_chain(world, a, wording, rel, kind) for k, anchor_kind, wording, rel in CHAINS if k == kind
                for a in pools[anchor_kind]]
    out = []
    for anchor_kind, wording, sentence in COMPARISONS:
        pool = world.people if anchor_kind == "person" else world.organisations
        for _ in range(len(pool)):
            a, b = rng.sample(pool, 2)
            d = _comparison(world, a, b, wording, sentence)
            if d is not None:
                out.append(d)
    return out


def _pick(drafts_by_kind: dict[str, list[Draft]], mix: dict[str, float], n: int, banned: set[str],
          rng: random.Random) -> list[Draft]:
    """`n` questions in the hop mix, none naming a banned anchor, no question twice."""
    total = sum(mix.values())
    counts = {k: round(n * mix.get(k, 0) / total) for k in KINDS}
    counts[max(counts, key=counts.get)] += n - sum(counts.values())
    out: list[Draft] = []
    for k in KINDS:
        pool = [d for d in drafts_by_kind[k] if not banned.intersection(d.anchors)]
        rng.shuffle(pool)
        seen, taken = set(), []
        for d in pool:
            if len(taken) == counts[k]:
                break
            if d.question not in seen:
                seen.add(d.question)
                taken.append(d)
        if len(taken) < counts[k]:
            raise ValueError(f"source.world: only {len(taken)} {k}-questions fit a world of this size "
                             f"({counts[k]} asked): raise source.world.people / works, or ask fewer questions")
        out.extend(taken)
    rng.shuffle(out)
    return out


def _distractors(world: World, d: Draft, n: int, rng: random.Random) -> list[str]:
    """Paragraphs that share words with the question but hold no step of its chain."""
    gold = {t for t, _ in d.support}
    words = sorted(set(d.question.replace("?", "").replace(",", "").split()) - {"The"})
    near = {n for w in words for n in world.by_word.get(w, ())}
    for t in sorted(gold):  # people born in the same city as a gold entity is in, born in or based in
        e = world.entities[t]
        near.update(world.born_in.get(t if e.kind == "city" else e.facts.get("city"), [])[:3])
    near = sorted(near - gold)
    rng.shuffle(near)
    return near[:n]


def _record(world: World, d: Draft, split: str, index: int, distractors: list[str], rng) -> dict:
    titles = [t for t, _ in d.support]
    titles = list(dict.fromkeys(titles)) + distractors
    rng.shuffle(titles)
    context = [[t, [(" " if i else "") + s for i, s in enumerate(world.entities[t].sentences)]] for t in titles]
    return {
        "_id": f"world-{split}-{index:05d}",
        "question": d.question,
        "answer": d.answer,
        "type": "comparison" if d.kind == "comparison" else "bridge",
        "level": {"2": "easy", "3": "medium"}.get(d.kind, "hard"),
        "hops": 2 if d.kind == "comparison" else int(d.kind),
        "supporting_facts": [[t, i] for t, i in d.support],
        "context": context,
    }


def generate_splits(s: WorldSettings) -> dict[str, list[dict]]:
    """Train and test records of the world `s` describes (test first, so its anchors are banned)."""
    world = build_world(s)
    rng = random.Random(s.seed + 1)
    drafts = {k: _drafts(world, k, rng) for k in KINDS}
    test = _pick(drafts, s.hop_mix, s.test_questions, set(), rng)
    banned = {a for d in test for a in d.anchors}
    train = _pick(drafts, s.hop_mix, s.train_questions, banned, rng)
    return {split: [_record(world, d, split, i, _distractors(world, d, s.distractors, rng), rng)
                    for i, d in enumerate(drafts_)] for split, drafts_ in (("test", test), ("train", train))}


_CACHE: dict[str, dict[str, list[dict]]] = {}


def generate(s: WorldSettings, split: str) -> list[dict]:
    """One split's records (generated once per process per settings)."""
    key = s.model_dump_json()
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = generate_splits(s)
    return _CACHE[key][split]


def world_bytes(s: WorldSettings, split: str) -> bytes:
    """The split as JSONL bytes: what `write_world` writes and what the loader's revision hashes."""
    return records_jsonl(generate(s, split))


def write_world(s: WorldSettings, out_dir: str | Path) -> list[Path]:
    """train.jsonl and test.jsonl of the world, in HotpotQA's format (to inspect or share)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in ("train", "test"):
        p = out_dir / f"{split}.jsonl"
        p.write_bytes(world_bytes(s, split))
        paths.append(p)
    return paths


def demonstrations(seed: int = 7) -> dict:
    """IRCoT demonstrations (one per question kind) from a world of another seed than any recipe's
    default, so no demo names an entity of the default world: what ircot/synthetic-world.json holds."""
    s = WorldSettings(seed=seed, train_questions=40, test_questions=8)
    world = build_world(s)
    demos = []
    for i, r in enumerate(generate_splits(s)["train"]):
        if any(d["type_key"] == _kind(r) for d in demos):
            continue
        gold = [world.entities[t].sentences[k] for t, k in r["supporting_facts"]]
        gold[-1] = f"{gold[-1]} So the answer is: {r['answer']}."
        titles = list(dict.fromkeys(t for t, _ in r["supporting_facts"]))
        demos.append({"qid": f"world-seed{seed}-{i}", "source": f"synthetic-world seed {seed} (ours)",
                      "type": r["type"], "type_key": _kind(r), "question": r["question"], "answer": r["answer"],
                      "paragraphs": [{"title": t, "text": " ".join(world.entities[t].sentences)} for t in titles],
                      "reasoning": gold})
    order = {"2": 0, "3": 1, "comparison": 2, "4": 3}
    demos.sort(key=lambda d: order[d.pop("type_key")] if "type_key" in d else 9)
    return {"_comment": "IRCoT demonstrations for the synthetic world, generated by "
                        "steper_bench.sources.synthetic_world.demonstrations(seed=7) (ours): one question per kind, "
                        "its gold paragraphs, and its gold sentences as the chain.",
            "demos": demos}


def _kind(r: dict) -> str:
    return "comparison" if r["type"] == "comparison" else str(r["hops"])


def parse(raw: dict, split: str):
    return titled_context_question(raw, split, "synthetic-world", joiner="")


DATASET = DatasetSpec(
    name="synthetic-world", parse=parse, label="World", title="Synthetic multi-hop world (steper-bench)",
    license="apache-2.0", citation="",
    demos={"ircot": "ircot/synthetic-world.json"}, metric="hotpotqa",
    generate=generate,
)
