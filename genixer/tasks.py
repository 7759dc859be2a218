"""The nine task types of the Genixer paper and their two generator groups."""

GENERAL_TASKS = ("common_vqa", "adv_vqa", "mc_vqa", "md")  # Genixer_L (LLaVA-1.5 based)
GROUNDING_TASKS = ("rec", "reg", "pointqa", "qca", "rd")  # Genixer_S (Shikra based)
TASKS = GENERAL_TASKS + GROUNDING_TASKS
MULTI_TURN_TASKS = ("md", "rd")

# Names used in the specific instruction ("This is a <name> task.").
TASK_NAMES = {
    "common_vqa": "Common VQA",
    "adv_vqa": "Adversarial VQA",
    "mc_vqa": "Multi-choice VQA",
    "md": "Multi-turn Dialogue",
    "rec": "Referring Expression Comprehension",
    "reg": "Referring Expression Generation",
    "pointqa": "Point Question Answering",
    "qca": "Question with Reasoning",
    "rd": "Referential Dialogue",
}


def group_of(task: str) -> str:
    if task in GENERAL_TASKS:
        return "general"
    if task in GROUNDING_TASKS:
        return "grounding"
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
