"""Prompt wording per answer format, in our own words (following FusionBench's direct / think split).

``direct`` asks for the final answer only, in the format the task's scorer reads; ``think`` asks the model to
reason step by step first and then give the final answer in that same format.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusion.log.schema import MODES


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class PromptStyle:
    """``instruction`` comes before the query; ``direct`` or ``think`` closes the message."""

    name: str
    instruction: str
    direct: str
    think: str

    def build(self, query: str, mode: str) -> str:
        check_mode(mode)
        closing = self.direct if mode == "direct" else self.think
        return f"{self.instruction}\n\n{query.strip()}\n\n{closing}"


_STEP = "Think it through step by step and show your reasoning first."

NUMBER = PromptStyle(
    "number",
    "Solve the following math word problem.",
    'Do not explain. Reply with the final numerical answer only, on one line, as "Answer: <number>".',
    f'{_STEP} Then end with the final numerical answer on its own line, as "Answer: <number>".',
)

MATH = PromptStyle(
    "math",
    "Solve the following math problem.",
    "Do not explain. Reply with the final answer only, in simplest form, inside \\boxed{}.",
    f"{_STEP} Then give the final answer (and nothing else) in simplest form inside \\boxed{{}}.",
)

MULTIPLE_CHOICE = PromptStyle(
    "multiple_choice",
    "Answer the following multiple-choice question by choosing one of the lettered options.",
    'Do not explain. Reply with the letter of the correct option only, as "Answer: <letter>".',
    f"{_STEP} Weigh the options, then end with the letter of the correct option on its own line, as "
    '"Answer: <letter>".',
)

CONTINUATION = PromptStyle(
    "continuation",
    "Read the beginning of the text below and choose the ending that most plausibly continues it.",
    MULTIPLE_CHOICE.direct,
    MULTIPLE_CHOICE.think,
)

SHORT_ANSWER = PromptStyle(
    "short_answer",
    "Answer the following question.",
    'Do not explain. Reply with a short answer only (a name, number or phrase), as "Answer: <answer>".',
    f"{_STEP} Then end with a short final answer (a name, number or phrase) on its own line, as "
    '"Answer: <answer>".',
)

PASSAGE_SPAN = PromptStyle(
    "passage_span",
    "Read the passage and answer the question about it.",
    'Do not explain. Reply with the shortest span of the passage that answers the question, as "Answer: <span>".',
    f"{_STEP} Refer to the passage, then end with the shortest span of the passage that answers the question "
    'on its own line, as "Answer: <span>".',
)

YES_NO = PromptStyle(
    "yes_no",
    "Read the passage and answer the yes/no question about it.",
    'Do not explain. Reply with "Answer: yes" or "Answer: no" only.',
    f'{_STEP} Refer to the passage, then end with "Answer: yes" or "Answer: no" on its own line.',
)

_FENCE = "in one fenced code block that starts with ```python and ends with ```"

CODE_TASK = PromptStyle(
    "code_task",
    "Write a Python function for the task below. Use the function name and arguments that the example test "
    "uses.",
    f"Do not explain. Reply with only the complete Python code (imports included, no tests) {_FENCE}.",
    f"First think step by step about how to solve it. Then give the complete Python code (imports included, "
    f"no tests) {_FENCE}.",
)

CODE_COMPLETION = PromptStyle(
    "code_completion",
    "Complete the Python function below so that it does what its docstring says.",
    "Do not explain. Reply with only the complete code: the whole function with its signature, plus any "
    f"imports or helpers it needs, no tests, {_FENCE}.",
    "First think step by step about how to solve it. Then give the complete code: the whole function with its "
    f"signature, plus any imports or helpers it needs, no tests, {_FENCE}.",
)
