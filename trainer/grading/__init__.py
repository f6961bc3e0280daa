"""Grading and metrics, the part of cotlab other projects can reuse.

`extract_answer` takes the last `\\boxed{}` (brace-matched); `is_equivalent` / `Grader` compare with the gold answer
first (integer, choice and string shortcuts, then Math-Verify in killable worker processes); `metrics` defines
pass@1, unbiased pass@k and maj@k once, as pure functions over per-sample correctness, with the majority rules
(cotlab's equivalence classes, NeMo-Skills' exact-string votes) in `majority`.
"""

from cotlab.trainer.grading.grader import Grade, Grader, extract_answer, grade_answer, grade_answers, is_equivalent

__all__ = ["Grade", "Grader", "extract_answer", "grade_answer", "grade_answers", "is_equivalent"]
