"""Fine-tuning benchmark: one real run on the default model, then chat with and without it.

    python bench/finetune.py                  # 50 example dialogues, default settings
    python bench/finetune.py --dialogues 200 --epochs 2
    python bench/finetune.py --quick          # 16 dialogues, 6 steps: checks the plumbing

Prints seconds per training step, the run's total time (submit to adapter published, the
durable job with data preparation, training, evaluation before/after and publishing), the
peak resident memory of this process while the run trains, held-out perplexity and the style
score before and after, and chat decode speed through the served path (``ChatService``) with
the adapter active versus the base model. Targets: the run under 10 minutes on 2 cores for 50
dialogues (a creator's laptop, not a GPU server); held-out perplexity at least 20 % lower than
the base model's on replies it did not train on, so the adapter learned the character's voice.

The character is synthetic but built the way creators write example dialogues: a pirate
captain whose replies have a recognisable voice (openers, *actions*, dialect, sign-offs) and
whose content varies by topic; the dialogues are generated from a fixed seed, one or two
exchanges each. The bundled model is converted once into a cache folder that is kept between
runs (``--models``), so that conversion is not part of the timings.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from agents.finetune.schema import FinetuneSettings
from agents.schema import ChatMessage
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings

TOPICS = [
    (
        ["How's the weather today?", "Will it rain tomorrow?", "Is a storm coming?"],
        [
            "the sky be grey as a gull's belly",
            "the wind be whistlin' from the north",
            "a squall be brewin' past the reef",
        ],
    ),
    (
        ["What do you eat on the ship?", "Are you hungry?", "What's for dinner?"],
        [
            "salted pork and hard tack, same as every night",
            "Cookie be boilin' a fish stew",
            "nothin' but biscuits with weevils in 'em",
        ],
    ),
    (
        ["Do you have any treasure?", "Where is the gold hidden?", "What's your best find?"],
        [
            "me gold be buried where no landlubber will find it",
            "the map be tattooed on me first mate's back",
            "a chest of doubloons sleeps under Skull Rock",
        ],
    ),
    (
        ["Tell me about your ship.", "How fast is your ship?", "What's your ship called?"],
        [
            "the Salty Maiden be the fastest sloop on the seven seas",
            "she creaks like an old man but she never sinks",
            "her sails be patched a hundred times",
        ],
    ),
    (
        ["How big is your crew?", "Do you trust your crew?", "Who is your first mate?"],
        [
            "twenty scallywags, each uglier than the last",
            "One-Eyed Pete be me first mate and me oldest friend",
            "I trust 'em as far as I can throw a cannon",
        ],
    ),
    (
        ["Have you seen a kraken?", "Are sea monsters real?", "What scares you at sea?"],
        [
            "I fought a kraken off the Cape of Sorrows",
            "the sea serpents sing at night, if ye listen",
            "nothin' scares me more than a calm sea with no wind",
        ],
    ),
    (
        ["Do you like rum?", "Why is the rum gone?", "What's your favourite drink?"],
        [
            "rum be the blood of every true sailor",
            "the rum be gone because Pete found me secret barrel",
            "a tot of dark rum cures every ache",
        ],
    ),
    (
        ["Is that your parrot?", "What's your parrot's name?", "Does the parrot talk?"],
        [
            "this be Captain Squawks, the cleverest bird alive",
            "he knows more curses than the whole crew",
            "he bit the governor's nose once, proud day",
        ],
    ),
    (
        ["Where are you from?", "Do you miss home?", "Do you have a family?"],
        [
            "the sea be me only home",
            "I was born in a tavern in Port Royal",
            "me mother was a mermaid, or so me father swore",
        ],
    ),
    (
        ["How do you find your way?", "Can you read the stars?", "Are we lost?"],
        [
            "I steer by the North Star and me gut",
            "a pirate never be lost, only explorin'",
            "the compass points to what I want most",
        ],
    ),
]
OPENERS = ["Arr,", "Yo-ho!", "Shiver me timbers,", "Avast,", "Arr, matey,"]
ACTIONS = [
    "*strokes his beard*",
    "*taps his wooden leg*",
    "*squints at the horizon*",
    "*takes a swig of rum*",
    "*adjusts his tricorn hat*",
]
CLOSERS = [
    "Savvy?",
    "Mark me words, matey.",
    "That be the truth of it.",
    "Now fetch me a grog, ye bilge rat!",
    "Yo-ho-ho!",
]
FOLLOW_UPS = [
    ("Really?", "Aye, really, as sure as the tide."),
    ("I don't believe you.", "Believe what ye like, landlubber, but the sea knows."),
    ("Tell me more.", "There be more tales than stars, matey, and I know 'em all."),
    ("That sounds dangerous.", "Danger be me middle name, arr!"),
    ("Wow.", "Aye, wow indeed, matey."),
]
CHAT_PROMPTS = [
    "What's the best thing about being a captain?",
    "Can you teach me to sail?",
    "What happened to your leg?",
    "Where are we headed next?",
    "Do you ever get seasick?",
]


def pirate_examples(n: int, seed: int = 0) -> str:
    """``n`` example dialogues in the card's ``mes_example`` format."""
    rng = random.Random(seed)
    blocks = []
    for i in range(n):
        questions, answers = TOPICS[i % len(TOPICS)]
        content = rng.choice(answers)
        reply = (
            f"{rng.choice(OPENERS)} {rng.choice(ACTIONS)} {content[0].upper()}{content[1:]}. "
            f"{rng.choice(CLOSERS)}"
        )
        lines = ["<START>", f"{{{{user}}}}: {rng.choice(questions)}", f"{{{{char}}}}: {reply}"]
        if rng.random() < 0.5:
            question, answer = rng.choice(FOLLOW_UPS)
            lines += [f"{{{{user}}}}: {question}", f"{{{{char}}}}: {rng.choice(ACTIONS)} {answer}"]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


class PeakRss:
    """Samples this process's resident memory every 0.1 s while running."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.1)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def chat_speed(svc: Services, agent_id: str, tokens: int, prompts: list[str]) -> list[float]:
    """Decode tokens/s of each reply through ChatService (the served path), greedy."""
    speeds = []
    for prompt in prompts:
        reply = svc.chat.complete(
            agent_id,
            [ChatMessage(role="user", content=prompt)],
            {"max_new_tokens": tokens, "temperature": 0.0, "stop": []},
        )
        first: float | None = None
        for _ in reply:
            first = first or time.perf_counter()
        ended = time.perf_counter()
        done = reply.usage.completion_tokens
        if first is not None and done > 1:
            speeds.append((done - 1) / max(ended - first, 1e-6))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=int, default=50)
    parser.add_argument("--epochs", type=float, default=None, help="default: the app's default")
    parser.add_argument("--steps", type=int, default=None, help="max optimizer steps")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--chat-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="16 dialogues, 6 steps")
    parser.add_argument(
        "--models",
        default=os.environ.get("ANIMA_MODEL_CACHE_DIR")
        or str(Path(tempfile.gettempdir()) / "anima-bench-models"),
        help="converted-model cache kept between runs",
    )
    args = parser.parse_args()
    if args.quick:
        args.dialogues, args.steps = 16, args.steps or 6
    load_before = os.getloadavg()

    overrides: dict[str, object] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.steps is not None:
        overrides["max_steps"] = args.steps
    if args.lr is not None:
        overrides["learning_rate"] = args.lr
    options = FinetuneSettings(**overrides)  # type: ignore[arg-type]

    with tempfile.TemporaryDirectory(prefix="anima-bench-ft-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), model_cache_dir=Path(args.models), llm_preload=False
        )
        svc = build_services(settings)
        try:
            started = time.perf_counter()
            svc.llm.get().count_tokens("warm up")  # converts the bundled model once (cached)
            prepare_s = time.perf_counter() - started
            agent = svc.agents.create_agent(
                {
                    "name": "Captain Brine",
                    "description": "{{char}} is the weathered captain of the Salty Maiden, a "
                    "pirate sloop. He talks like an old sea dog.",
                    "personality": "boastful, superstitious, fond of rum",
                    "scenario": "{{user}} has signed on as a deckhand.",
                    "first_mes": "*looks {{user}} up and down* Arr, so ye be the new deckhand.",
                    "mes_example": pirate_examples(args.dialogues),
                },
                principal=SYSTEM,
            )
            with PeakRss() as rss:
                t0 = time.perf_counter()
                run = svc.finetune.start(agent.id, options=options, principal=SYSTEM)
                assert run.job is not None
                job = svc.jobs.wait(run.job.id, timeout=24 * 3600, poll_s=0.5, principal=SYSTEM)
                total_s = time.perf_counter() - t0
            if job.status != "succeeded":
                raise SystemExit(f"the run ended {job.status}: {job.error or job.message}")
            run = svc.finetune.get_run(agent.id, run.id)
            training, report = run.metrics.training, run.metrics.eval
            assert training is not None and report is not None and run.adapter is not None

            base_speed = chat_speed(svc, agent.id, args.chat_tokens, CHAT_PROMPTS)
            svc.finetune.activate(agent.id, run.adapter.name, principal=SYSTEM)
            adapter_speed = chat_speed(svc, agent.id, args.chat_tokens, CHAT_PROMPTS)
        finally:
            svc.close()

    change = report.perplexity_change
    rows = [
        ("dialogues (train / held out)", f"{run.data.train} / {run.data.held_out}", ""),
        ("optimizer steps", str(training.steps), ""),
        ("seconds per step", f"{training.seconds_per_step:.2f}", ""),
        ("training time", f"{training.seconds:.0f} s", ""),
        ("run total (submit to published)", f"{total_s:.0f} s", "< 600 s"),
        ("peak RSS during the run", f"{rss.peak / 2**20:,.0f} MB", ""),
        ("held-out perplexity before", f"{report.before.perplexity:.2f}", ""),
        ("held-out perplexity after", f"{report.after.perplexity:.2f}", ""),
        ("perplexity change", f"{100 * change:+.1f} %", "<= -20 %"),
        ("style score before", f"{report.before.style}", ""),
        ("style score after", f"{report.after.style}", ""),
        ("style score of the creator's held-out replies", f"{report.style_reference}", ""),
        ("chat decode tok/s, base (median)", _median(base_speed), ""),
        ("chat decode tok/s, adapter (median)", _median(adapter_speed), ""),
        ("adapter size", f"{run.adapter.size_bytes / 1e6:.1f} MB", ""),
    ]
    ratio = (
        statistics.median(adapter_speed) / statistics.median(base_speed)
        if base_speed and adapter_speed
        else float("nan")
    )
    rows.append(("chat speed adapter / base", f"{ratio:.2f}", ""))
    print(
        f"\nbench/finetune.py: {args.dialogues} dialogues, device {training.device}, "
        f"{training.dtype}; model conversion/warm-up {prepare_s:.0f} s (not counted)"
    )
    print(
        f"load average before {load_before[0]:.2f} / after {os.getloadavg()[0]:.2f} "
        f"(1 min), {os.cpu_count()} CPUs"
    )
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'metric'.ljust(width)} | value | target |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for name, value, target in rows:
        print(f"| {name.ljust(width)} | {value} | {target} |")
    print("\nsample replies (held-out prompt -> before / after):")
    for sample in report.samples:
        print(f"  {sample.prompt}\n    before: {sample.before}\n    after:  {sample.after}")
    met = total_s < 600 and change <= -0.20
    print(f"\ntargets {'met' if met else 'MISSED'}")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "n/a"


if __name__ == "__main__":
    main()
