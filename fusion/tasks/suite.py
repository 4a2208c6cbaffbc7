"""FusionBench's 14 tasks plus our four synthetic ones, registered in :data:`~fusion.tasks.base.TASKS`.

Domains follow FusionBench's grouping (:mod:`fusion.tasks.domains`). Where a benchmark's test split has no labels (CommonsenseQA, HellaSwag,
TriviaQA, NQ-Open, SQuAD, BoolQ), our "test" split reads its validation split, as FusionBench does; GPQA has a
single split ("train" on the Hub), which we use as "test".
"""

from __future__ import annotations

from fusion.tasks import layouts, prompts, synthetic
from fusion.tasks.base import TASKS, HFSource, Task, register_task
from fusion.tasks.scoring import score_cem, score_choice, score_code, score_math, score_number, score_yes_no

TRAIN_TEST = {"train": "train", "test": "test"}
TRAIN_VAL_TEST = {"train": "train", "val": "validation", "test": "test"}
TEST_IS_VALIDATION = {"train": "train", "val": "validation", "test": "validation"}
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")  # fmt: skip


def _mc(name: str, description: str, convert, hf: HFSource, style=prompts.MULTIPLE_CHOICE) -> Task:
    return Task(name, "mc_letter", description, style, score_choice, convert=convert, hf=hf)


SUITE: tuple[Task, ...] = (
    # math
    Task("gsm8k", "gsm8k_number", "Grade-school math word problems with a numeric answer.",
         prompts.NUMBER, score_number, convert=layouts.gsm8k, hf=HFSource("openai/gsm8k", ("main",), TRAIN_TEST),
         solution=layouts.gsm8k_solution),
    Task("math", "math_boxed", "Competition mathematics (MATH, seven subjects); answer in \\boxed{}.",
         prompts.MATH, score_math, convert=layouts.hendrycks_math,
         hf=HFSource("EleutherAI/hendrycks_math", MATH_SUBJECTS, TRAIN_TEST)),
    Task("arith_word", "gsm8k_number", "Synthetic arithmetic word problems with exact integer answers.",
         prompts.NUMBER, score_number, generate=synthetic.generate_arith_word,
         generate_solved=synthetic.solved_arith_word),
    Task("mental_math", "gsm8k_number", "Synthetic one-step arithmetic (times tables, small sums and differences).",
         prompts.NUMBER, score_number, generate=synthetic.generate_mental_math,
         generate_solved=synthetic.solved_mental_math),
    # code
    Task("mbpp", "pass@1", "Basic Python programming problems checked by assert tests (MBPP).",
         prompts.CODE_TASK, score_code, convert=layouts.mbpp,
         hf=HFSource("google-research-datasets/mbpp", ("full",), TRAIN_VAL_TEST), solution=layouts.mbpp_solution),
    Task("human_eval", "pass@1", "Python functions to complete from a signature and docstring.",
         prompts.CODE_COMPLETION, score_code, convert=layouts.human_eval,
         hf=HFSource("openai/openai_humaneval", (None,), {"test": "test"})),
    # commonsense
    _mc("commonsense_qa", "Five-option questions that need everyday commonsense knowledge.",
        layouts.commonsense_qa, HFSource("tau/commonsense_qa", (None,), TEST_IS_VALIDATION)),
    _mc("openbook_qa", "Elementary science questions combining a core fact with commonsense.",
        layouts.openbook_qa, HFSource("allenai/openbookqa", ("main",), TRAIN_VAL_TEST)),
    _mc("arc_challenge", "Hard grade-school science questions (ARC Challenge set).",
        layouts.arc, HFSource("allenai/ai2_arc", ("ARC-Challenge",), TRAIN_VAL_TEST)),
    _mc("hellaswag", "Pick the most plausible continuation of an everyday scene.",
        layouts.hellaswag, HFSource("Rowan/hellaswag", (None,), TEST_IS_VALIDATION), style=prompts.CONTINUATION),
    Task("mc_reasoning", "mc_letter",
         "Synthetic four-option reasoning questions (comparisons, alphabetical order, weekdays, units, odd one "
         "out) with an exactly known answer.",
         prompts.MULTIPLE_CHOICE, score_choice, generate=synthetic.generate_mc_reasoning,
         generate_solved=synthetic.solved_mc_reasoning),
    # world knowledge
    Task("natural_qa", "cem", "Open-domain questions from real search queries (NQ-Open).",
         prompts.SHORT_ANSWER, score_cem, convert=layouts.natural_qa,
         hf=HFSource("google-research-datasets/nq_open", ("nq_open",), {"train": "train", "test": "validation"})),
    Task("trivia_qa", "cem", "Trivia questions answered without a context passage.",
         prompts.SHORT_ANSWER, score_cem, convert=layouts.trivia_qa,
         hf=HFSource("mandarjoshi/trivia_qa", ("rc.nocontext",), TEST_IS_VALIDATION)),
    Task("world_capitals", "cem", "Synthetic questions on 80 countries' capitals and continents.",
         prompts.SHORT_ANSWER, score_cem, generate=synthetic.generate_world_capitals),
    # reading
    Task("squad", "cem", "Answer a question with a span of a Wikipedia passage (SQuAD v1.1).",
         prompts.PASSAGE_SPAN, score_cem, convert=layouts.squad,
         hf=HFSource("rajpurkar/squad", ("plain_text",), {"train": "train", "test": "validation"})),
    Task("boolq", "yes_no", "Yes/no questions about a passage.",
         prompts.YES_NO, score_yes_no, convert=layouts.boolq,
         hf=HFSource("google/boolq", (None,), {"train": "train", "test": "validation"})),
    # popular
    _mc("mmlu", "Four-option exam questions over 57 subjects (MMLU).",
        layouts.mmlu, HFSource("cais/mmlu", ("all",), {"train": "auxiliary_train", "val": "validation",
                                                         "test": "test"})),  # fmt: skip
    _mc("gpqa", "Graduate-level science questions (GPQA main); options shuffled by seed.",
        layouts.gpqa, HFSource("Idavidrein/gpqa", ("gpqa_main",), {"test": "train"})),
)  # fmt: skip

FUSIONBENCH_TASKS = tuple(t.name for t in SUITE if not t.synthetic)
SYNTHETIC_TASKS = tuple(t.name for t in SUITE if t.synthetic)

for _task in SUITE:
    register_task(_task)


def get_task(name: str | Task) -> Task:
    """The registered task called ``name`` (a :class:`Task` is returned as is)."""
    if isinstance(name, Task):
        return name
    return TASKS.get(name)
