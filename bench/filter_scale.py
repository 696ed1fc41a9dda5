"""How long does `opencharacter filter` take on the paper's 20k characters, and does it still find duplicates?

Builds a run directory with N synthetic-but-realistic character profiles (each grown from a real
Persona Hub persona in `shared/data/personahub_sample.jsonl`, with names, places, appearance,
experience and personality drawn from varied phrase lists, so no two profiles share much more than
their labels), plus a few planted near-duplicates (an accent in the name, a changed age, a swapped
clause, a trailing phrase: what a teacher model re-prompted with the same persona returns), and
one short dialogue per character so the dialogue filters run too. Then it runs the real CLI,
`opencharacter filter --run RUN`, as a subprocess and reports wall time, CPU time (user + sys of
the child), peak RSS of the child, and the recall on the planted duplicates: of the planted
copies, how many were dropped.

    python bench/filter_scale.py                         # 5k and 20k profiles, 2% planted
    python bench/filter_scale.py --sizes 2000 --keep     # keep the run directory to look at it
    python bench/filter_scale.py --templated 4900        # a weak teacher: profiles from 20 templates

`--templated N` is the duplicate-heavy case: N profiles that are a few templates with a changed
name, age and place (what a weak or templated teacher returns: most profiles share most of their
words), three dialogues each. The first LSH version was killed by the OOM killer at 24 GB on
4,900 such profiles; the bound is < 1.5 GB peak RSS.

The machine load (`os.getloadavg`) is printed beside each number: under load, CPU seconds are the
figure to compare, not wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opencharacter.records import Character, ChatMessage, Dialogue, Profile
from opencharacter.store import RunStore


def phrases(text: str, separator: str) -> list[str]:
    return text.split(separator)


# Persona Hub samples beside the checkout (or named by OPENCHARACTER_BENCH_PERSONAS: a worktree has
# another parent), else the package's bundled samples.
PERSONAS = Path(
    os.environ.get("OPENCHARACTER_BENCH_PERSONAS")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "personahub_sample.jsonl"
)
if not PERSONAS.exists():
    PERSONAS = Path(__file__).resolve().parents[1] / "src" / "opencharacter" / "sources" / "samples" / "personas.jsonl"

FIRST = phrases(
    "Ines Amara Bruno Chen Dmitri Elena Farid Grace Hiroshi Isabel Jamal Katarzyna Liam Maya Nikolai Olga Pedro "
    "Quentin Rosa Samir Tomasz Ursula Viktor Wen Ximena Yusuf Zofia Aiko Bjorn Carmen Dara Emeka Fatima Gustavo "
    "Hana Ivan Jonas Kemal Leila Mateo Nadia Oskar Priya Rafael Sofia Tariq Uma Valentina Walter Yara",
    " ",
)
LAST = phrases(
    "Moreau Okafor Rossi Nakamura Kowalski Haddad Fernandes Lindqvist Petrov Alvarez Mensah Schmidt O'Brien "
    "Kaur Tanaka Dubois Costa Novak Ibrahim Jensen Santos Yilmaz Ng Murphy Baptiste Horvath Ortiz Sato Weber "
    "Rahman Gallagher Kim Duarte Popescu Nilsson Abara Castillo Park Ivanova Mbeki",
    " ",
)
PLACES = phrases(
    "Brest|Lagos|Naples|Osaka|Krakow|Beirut|Porto|Uppsala|Kazan|Seville|Accra|Leipzig|Cork|Amritsar|Sapporo|"
    "Lyon|Recife|Brno|Alexandria|Aarhus|Manila|Izmir|Penang|Galway|Port-au-Prince|Debrecen|Oaxaca|Kyoto|Bremen|"
    "Dhaka|Limerick|Busan|Coimbra|Cluj-Napoca|Gothenburg|Nairobi|Valparaiso|Daegu|Tbilisi|Durban|Quebec City|"
    "Tucson|Glasgow|Hanoi|Cusco|Tromso|Marrakesh|Adelaide|Winnipeg|Bergen",
    "|",
)
RACES = phrases(
    "French|Nigerian|Italian|Japanese|Polish|Lebanese|Portuguese|Swedish|Russian|Spanish|Ghanaian|German|Irish|"
    "Indian|Korean|Brazilian|Czech|Egyptian|Danish|Filipino|Turkish|Malaysian|Haitian|Hungarian|Mexican",
    "|",
)
HAIR = phrases(
    "silver hair tied back|a shaved head|curly red hair|short black hair streaked with grey|long braids|"
    "a messy brown mop|a neat bun|close-cropped white hair|a dyed blue fringe|wavy auburn hair",
    "|",
)
CLOTHES = phrases(
    "a navy wool coat|paint-stained overalls|a pressed linen shirt|a faded band T-shirt|a tweed jacket with "
    "elbow patches|a bright yellow raincoat|a tailored charcoal suit|a hand-knitted cardigan|cargo shorts and "
    "hiking boots|a hospital scrub top",
    "|",
)
DETAILS = phrases(
    "a brass pocket watch on a chain|reading glasses pushed up on the forehead|a scar across the left eyebrow|"
    "ink-stained fingers|a silver ring on every finger|a camera slung over one shoulder|a pencil behind one ear|"
    "a faded tattoo of an anchor|a limp from an old knee injury|a laugh you can hear across the room",
    "|",
)
TRAITS = phrases(
    "patient precise wry curious stubborn warm blunt meticulous restless generous anxious playful skeptical "
    "loyal impatient gentle sarcastic idealistic pragmatic shy talkative methodical daring nostalgic cheerful "
    "brooding witty earnest competitive thoughtful",
    " ",
)
HABITS = phrases(
    "quotes old proverbs|answers questions with questions|keeps a notebook of overheard phrases|hums while "
    "thinking|never finishes a cup of coffee|argues both sides of every debate|collects odd facts about "
    "birds|apologises too often|speaks slowly and chooses each word|laughs at their own jokes first|"
    "corrects everyone's grammar|tells long stories with no ending",
    "|",
)
CAREERS = phrases(
    "spent {n} years in {place} before settling down|worked for {n} years at a small firm in {place}|"
    "trained in {place} and taught there for {n} years|moved to {place} {n} years ago for work|"
    "has volunteered in {place} every summer for {n} years|ran a modest shop in {place} for {n} years",
    "|",
)


def load_personas(path: Path = PERSONAS) -> list[str]:
    return [json.loads(line)["persona"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_profile(rng: random.Random, persona: str) -> Profile:
    """One profile grown from a persona: persona text first (what a teacher would expand), then details."""
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    place, home = rng.sample(PLACES, 2)
    core = persona.rstrip(".").replace("A ", "", 1).replace("An ", "", 1)
    career = rng.choice(CAREERS).format(n=rng.randint(2, 40), place=place)
    later = rng.choice(CAREERS).format(n=rng.randint(2, 30), place=rng.choice(PLACES))
    habits = " and ".join(rng.sample(HABITS, 2))
    traits = rng.sample(TRAITS, 3)
    return Profile(
        name=name,
        age=rng.randint(16, 88),
        gender=rng.choice(["female", "male", "non-binary"]),
        race=rng.choice(RACES),
        birth_place=home,
        appearance=f"{rng.choice(HAIR).capitalize()}, {rng.choice(CLOTHES)} and {rng.choice(DETAILS)}.",
        general_experience=f"{name.split()[0]} is {core[0].lower() + core[1:]}; {career}, and {later}.",
        personality=f"{traits[0].capitalize()}, {traits[1]} and {traits[2]}; {habits}.",
    )


def near_copy(rng: random.Random, profile: Profile) -> Profile:
    """What a teacher returns when asked again for the same persona: the same character, barely changed."""
    edits = [
        {"name": profile.name.replace("a", "á", 1).replace("e", "é", 1)},
        {"age": min(120, profile.age + rng.choice([1, 2, -1]))},
        {"personality": profile.personality.replace(" and ", ", and ", 1)},
        {"appearance": profile.appearance.rstrip(".") + ", always."},
        {"general_experience": profile.general_experience.replace(";", ".", 1)},
    ]
    update: dict[str, object] = {}
    for edit in rng.sample(edits, 2):
        update.update(edit)
    return profile.model_copy(update=update)


def character(index: int, persona: str, profile: Profile) -> Character:
    return Character(
        character_id=f"c{index:06d}",
        persona=persona,
        character=profile.render(),
        profile=profile,
        model="bench",
        prompt_version="profile@v1",
    )


def dialogue(index: int, character_id: str) -> Dialogue:
    answer = "Ah, the tide waits for no one, and neither do my clocks. Come in out of the wind and sit down."
    return Dialogue(
        dialogue_id=f"d{index:06d}",
        question_id="q",
        character_id=character_id,
        strategy="generate",
        source="bench",
        messages=[
            ChatMessage(role="system", content="sys"),
            ChatMessage(role="user", content="Hello, who are you?"),
            ChatMessage(role="assistant", content=answer),
        ],
        character_answer=answer,
        model="bench",
        prompt_version="generate@v1",
        system_prompt_version="character_system@v1",
        finish_reasons=["stop"],
    )


def build_run(run: Path, size: int, planted_fraction: float, seed: int = 0) -> set[str]:
    """Writes `size` characters (planted copies included) into RUN's store; returns the planted copies' ids.

    Each copy is placed at a random later position than its original, so which one survives is
    decided by the filter's order, as in a real run.
    """
    rng = random.Random(seed)
    personas = load_personas()
    planted = int(size * planted_fraction)
    originals = [(p, make_profile(rng, p)) for p in (rng.choice(personas) for _ in range(size - planted))]
    # Each copy lands at a random place after its original: positions are floats, sorted once at the end.
    rows: list[tuple[float, str, Profile, bool]] = [(n, p, prof, False) for n, (p, prof) in enumerate(originals)]
    for source in rng.sample(range(len(originals)), planted):
        persona, profile = originals[source]
        rows.append((rng.uniform(source + 0.5, len(originals)), persona, near_copy(rng, profile), True))
    rows.sort(key=lambda row: row[0])
    store = RunStore(run)
    copies = set()
    try:
        for index, (_, persona, profile, is_copy) in enumerate(rows):
            record = character(index, persona, profile)
            store.put_record("profiles", record.character_id, f"{index:09d}", record)
            store.put_record("dialogues", f"d{index:06d}", f"{index:09d}", dialogue(index, record.character_id))
            if is_copy:
                copies.add(record.character_id)
    finally:
        store.close()
    return copies


def build_templated_run(run: Path, size: int, templates: int = 20, seed: int = 0) -> None:
    """`size` profiles from `templates` templates (name, age, birthplace varied), three dialogues each."""
    rng = random.Random(seed)
    personas = load_personas()
    bases = [make_profile(rng, persona) for persona in rng.sample(personas, templates)]
    store = RunStore(run)
    try:
        for index in range(size):
            base = bases[index % templates]
            profile = base.model_copy(
                update={
                    "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    "age": rng.randint(16, 88),
                    "birth_place": rng.choice(PLACES),
                }
            )
            record = character(index, personas[index % len(personas)], profile)
            store.put_record("profiles", record.character_id, f"{index:09d}", record)
            for turn in range(3):
                number = index * 3 + turn
                store.put_record("dialogues", f"d{number:06d}", f"{number:09d}", dialogue(number, record.character_id))
    finally:
        store.close()


def time_filter(run: Path) -> dict[str, float]:
    """Runs the CLI as a child process; CPU and peak RSS come from the child's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "opencharacter", "filter", "--run", str(run)], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        # ru_maxrss is the largest child so far (kB on Linux): run one size per process for exact numbers.
        "peak_rss_mb": after.ru_maxrss / 1024,
    }


def recall(run: Path, copies: set[str]) -> tuple[float, int]:
    kept = {json.loads(line)["character_id"] for line in (run / "filtered" / "characters.jsonl").open()}
    found = len(copies - kept)
    report = json.loads((run / "filtered" / "filter_report.json").read_text())
    dropped = report["characters_in"] - report["characters_out"]
    return found / max(1, len(copies)), dropped - found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--planted", type=float, default=0.02, help="fraction of profiles that are near-copies")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    parser.add_argument("--templated", type=int, help="instead: this many profiles from 20 templates")
    args = parser.parse_args()
    if args.templated:
        with tempfile.TemporaryDirectory(prefix="filter-templated-") as tmp:
            run = Path(tmp) / "run"
            build_templated_run(run, args.templated)
            load = os.getloadavg()[0]
            timing = time_filter(run)
            report = json.loads((run / "filtered" / "filter_report.json").read_text())
            row = {"templated_profiles": args.templated, "dialogues": args.templated * 3, **timing}
            row |= {"characters_out": report["characters_out"], "load_1min_before": load, "notes": report["notes"]}
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="filter-scale-") as tmp:
        for size in args.sizes:
            run = Path(tmp) / f"run-{size}"
            copies = build_run(run, size, args.planted)
            load = os.getloadavg()[0]
            timing = time_filter(run)
            found, extra = recall(run, copies)
            row = {"profiles": size, "planted": len(copies), **timing, "recall": found, "other_dropped": extra}
            row["load_1min_before"] = load
            results.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            if args.keep:
                print(f"kept {run}", file=sys.stderr)
        if args.keep:
            input("press Enter to delete the run directories… ")
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last["profiles"] / first["profiles"]
        print(
            f"{first['profiles']} → {last['profiles']} profiles ({growth:.1f}×): "
            f"CPU {last['cpu_s'] / first['cpu_s']:.2f}×, wall {last['wall_s'] / first['wall_s']:.2f}×"
        )


if __name__ == "__main__":
    main()
