"""Benchmark cotlab's grader against plain sequential Math-Verify on realistic answer shapes.

    python bench/grading.py [--pairs N] [--workers W] [--seed S]

Pairs come from a seeded generator shaped like a 64-samples-per-problem evaluation: each problem has a
gold answer of one shape (AIME integers, fractions, radicals, multiples of pi, intervals, tuples, equations,
degrees, percents, thousands separators, text, multiple choice) and 64 sampled answers, each a correct
spelling of the gold, a wrong answer of the same shape, or no answer.

Baseline ("plain Math-Verify"): for every pair, in this process, `verify(parse(gold), parse(pred))` with
Math-Verify's default extraction configs and its own signal timeouts, both strings wrapped in `$...$` the
way NeMo-Skills' math_grader does (bare LaTeX is not found otherwise); no answer counts as wrong.

Prints throughput of both, the ratio, and every disagreement grouped by the cotlab rule that decided it,
each group with its explanation and a few examples. A disagreement on the "math_verify" rule would be
unexplained (both sides call the same library on the same strings) and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from cotlab.trainer.grading.grader import Grade, Grader

SAMPLES_PER_PROBLEM = 64

# Why cotlab and plain Math-Verify may disagree, by the cotlab rule that decided the pair.
EXPLANATIONS = {
    "integer": "exact integer/decimal comparison (AIME kind: no 6-place float rounding; NeMo strips `%` first)",
    "choice": "letter comparison: a multiple-choice answer with text after the letter (`C. x = 42`, NeMo case)",
    "string": "identical after normalisation, but Math-Verify could not parse it (counted wrong there)",
    "timeout": "cotlab's per-comparison timeout fired (baseline used Math-Verify's signal timeout)",
    "no_answer": "no answer: both count it wrong, so this cannot disagree",
}


Variant = tuple[str, str]  # (gold, predicted)


def _integer(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    n = rng.randrange(0, 1000)
    right = [str(n), f"{n:03d}", f"{n}.", f"{n}.0", f"\\text{{{n}}}" if n > 99 else str(n)]
    return "integer", str(n), right, lambda: str(rng.choice([m for m in range(1000) if m != n][:50] + [n + 1]))


def _fraction(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    b = rng.choice([2, 4, 5, 8, 3, 7, 9, 12])
    a = rng.choice([x for x in range(1, 4 * b) if _gcd(x, b) == 1])
    right = [f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\frac{{{2 * a}}}{{{2 * b}}}"]
    if b in (2, 4, 5, 8):
        right.append(f"{a / b:g}")
    return "latex", f"\\frac{{{a}}}{{{b}}}", right, lambda: f"\\frac{{{a + rng.randint(1, 5)}}}{{{b}}}"


def _radical(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10, 11, 13])
    right = [f"{a}\\sqrt{{{b}}}", f"{a} \\sqrt {b}", f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{b}"]
    return "latex", f"{a}\\sqrt{{{b}}}", right, lambda: f"{a + rng.randint(1, 3)}\\sqrt{{{b}}}"


def _pi(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    a, b = rng.randint(1, 12), rng.choice([2, 3, 4, 6])
    right = [f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi", f"{a}\\pi/{b}", f"\\dfrac{{{a}\\pi}}{{{b}}}"]
    return "latex", f"\\frac{{{a}\\pi}}{{{b}}}", right, lambda: f"\\frac{{{a + 1}\\pi}}{{{b}}}"


def _interval(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    a = rng.randint(-9, 5)
    b = a + rng.randint(1, 9)
    right = [f"({a}, {b}]", f"({a},{b}]", f"\\left({a}, {b}\\right]"]
    return "latex", f"({a}, {b}]", right, lambda: rng.choice([f"[{a}, {b}]", f"({a}, {b + 1}]", f"({a}, {b})"])


def _tuple(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    right = [f"({a}, {b})", f"({a},{b})", f"\\left({a}, {b}\\right)"]
    return "latex", f"({a}, {b})", right, lambda: f"({b}, {a + 1})"


def _equation(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    n = rng.randint(-50, 50)
    right = [f"x={n}", f"x = {n}", str(n)]
    return "latex", str(n), right, lambda: f"x={n + rng.randint(1, 5)}"


def _degrees(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    n = rng.choice(range(10, 180, 5))
    right = [f"{n}^\\circ", f"{n}^{{\\circ}}", f"{n}°", str(n)]
    return "latex", f"{n}^\\circ", right, lambda: f"{n + 5}^\\circ"


def _percent(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    n = rng.randint(1, 99)
    right = [f"{n}\\%", str(n), f"{n}%"]
    return "latex", f"{n}\\%", right, lambda: f"{n + 1}\\%"


def _thousands(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    n = rng.randint(1000, 99999)
    right = [str(n), f"{n:,}", f"{n:,}".replace(",", "{,}")]
    return "latex", str(n), right, lambda: str(n + rng.randint(1, 9))


def _text(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    word, other = rng.sample(["even", "odd", "Evelyn", "Tuesday", "yes", "no", "parabola", "circle"], 2)
    right = [f"\\text{{{word}}}", word, f"\\textbf{{{word}}}"]
    return "text", f"\\text{{{word}}}", right, lambda: f"\\text{{{other}}}"


def _choice(rng: random.Random) -> tuple[str, str, list[str], Callable[[], str]]:
    letter = rng.choice("ABCDE")
    right = [letter, f"({letter})", f"\\text{{({letter})}}", f"\\textbf{{{letter}}}"]
    return "choice", letter, right, lambda: rng.choice([c for c in "ABCDE" if c != letter])


SHAPES = [
    _integer,
    _integer,
    _integer,
    _fraction,
    _radical,
    _pi,
    _interval,
    _tuple,
    _equation,
    _degrees,
    _percent,
    _thousands,
    _text,
    _choice,
]


def generate(pairs: int, seed: int) -> list[tuple[str, str | None, str, str]]:
    """(answer_kind, predicted, gold, shape) tuples, 64 samples per problem; deterministic for a seed."""
    rng = random.Random(seed)
    out: list[tuple[str, str | None, str, str]] = []
    while len(out) < pairs:
        shape = rng.choice(SHAPES)
        kind, gold, right, wrong = shape(rng)
        accuracy = rng.random()  # problems range from hopeless to easy
        for _ in range(min(SAMPLES_PER_PROBLEM, pairs - len(out))):
            roll = rng.random()
            if roll < 0.05:
                predicted: str | None = None
            elif roll < 0.05 + 0.95 * accuracy:
                predicted = rng.choice(right)
            else:
                predicted = wrong()
            out.append((kind, predicted, gold, shape.__name__.lstrip("_")))
    return out


def baseline(predicted: str | None, gold: str) -> bool:
    """Plain Math-Verify, gold first, NeMo-Skills' `$` wrapping."""
    from math_verify import parse, verify  # type: ignore[import-untyped]

    if predicted is None:
        return False
    return bool(verify(parse(_wrap(gold)), parse(_wrap(predicted))))


_LATEX_ENV = re.compile(r"\$.*\$|\\\(.*\\\)|\\\[.*\\\]|\\boxed\{", re.DOTALL)


def _wrap(s: str) -> str:
    return s if _LATEX_ENV.search(s) else f"${s}$"


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=None, help="grader workers (default: usable CPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=3, help="disagreements printed per category")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # Math-Verify warns on every timeout it hits

    data = generate(args.pairs, args.seed)
    unique = len({(p, g, k) for k, p, g, _ in data})
    print(f"pairs: {len(data)} ({unique} distinct), {len(data) // SAMPLES_PER_PROBLEM} problems, seed {args.seed}")

    import math_verify  # noqa: F401 - import cost is not grading cost for either side

    started = time.perf_counter()
    expected = [baseline(p, g) for _, p, g, _ in data]
    baseline_s = time.perf_counter() - started

    started = time.perf_counter()
    grades: list[Grade | None] = [None] * len(data)
    with Grader(workers=args.workers) as grader:
        by_kind: dict[str, list[int]] = defaultdict(list)
        for i, (kind, *_rest) in enumerate(data):
            by_kind[kind].append(i)
        for kind, indices in by_kind.items():
            results = grader.grade([(data[i][1], data[i][2]) for i in indices], answer_kind=kind)  # type: ignore[arg-type]
            for i, grade in zip(indices, results, strict=True):
                grades[i] = grade
        workers = grader.workers
    cotlab_s = time.perf_counter() - started

    print(f"baseline (sequential Math-Verify): {baseline_s:7.2f} s  {len(data) / baseline_s:8.0f} pairs/s")
    print(f"cotlab Grader ({workers} workers):      {cotlab_s:7.2f} s  {len(data) / cotlab_s:8.0f} pairs/s")
    print(f"speedup: {baseline_s / cotlab_s:.2f}x")
    rules = Counter(g.rule for g in grades if g is not None)
    print("decided by: " + ", ".join(f"{rule} {count}" for rule, count in rules.most_common()))

    disagreements: dict[str, list[tuple[str, str | None, str, str, bool]]] = defaultdict(list)
    for (kind, predicted, gold, shape), want, decided in zip(data, expected, grades, strict=True):
        assert decided is not None
        if decided.correct != want:
            disagreements[decided.rule].append((kind, predicted, gold, shape, decided.correct))
    total = sum(len(v) for v in disagreements.values())
    unexplained = sum(len(v) for rule, v in disagreements.items() if rule not in EXPLANATIONS)
    print(f"disagreements: {total} ({unexplained} unexplained)")
    for rule, cases in sorted(disagreements.items()):
        distinct = Counter((k, p, g, s, c) for k, p, g, s, c in cases)
        print(f"  [{rule}] {len(cases)} pairs, {len(distinct)} distinct: {EXPLANATIONS.get(rule, 'UNEXPLAINED')}")
        for (kind, predicted, gold, shape, ours), count in distinct.most_common(args.examples):
            print(
                f"      {shape:9} kind={kind:7} gold={gold!r:16} pred={predicted!r:18} "
                f"cotlab={ours} math_verify={not ours} (x{count})"
            )
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
