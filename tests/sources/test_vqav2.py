"""VQAv2: the questions and annotations JSON as the release writes them."""

import pytest

from tests.sources.helpers import collected, extra, run_collect, write_image, write_json


def _release(tmp_path):
    images = tmp_path / "val2014"
    write_image(images / "COCO_val2014_000000000042.jpg", (640, 480))
    write_image(images / "COCO_val2014_000000000073.jpg", (300, 500))
    questions = {
        "info": {"description": "This is v2.0 of the VQA dataset."}, "task_type": "Open-Ended", "data_type": "mscoco",
        "license": {"url": "http://creativecommons.org/licenses/by/4.0/", "name": "Creative Commons Attribution 4.0 International License"},
        "data_subtype": "val2014",
        "questions": [
            {"image_id": 42, "question": "What is on the table?", "question_id": 420000},
            {"image_id": 73, "question": "How many dogs are there?", "question_id": 730001},
            {"image_id": 99, "question": "Is it raining?", "question_id": 990000},  # image not in the folder
            {"image_id": 42, "question": "What colour is the plate?", "question_id": 420001},  # its annotation has no answer
        ],
    }
    answers = ["pizza"] * 7 + ["food", "pizza slice", "cheese pizza"]
    annotations = {
        "info": questions["info"], "license": questions["license"], "data_subtype": "val2014",
        "annotations": [
            {"question_type": "what is on the", "multiple_choice_answer": "pizza",
             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
             "image_id": 42, "answer_type": "other", "question_id": 420000},
            {"question_type": "how many", "multiple_choice_answer": "2",
             "answers": [{"answer": "2", "answer_confidence": "maybe", "answer_id": i + 1} for i in range(10)],
             "image_id": 73, "answer_type": "number", "question_id": 730001},
            {"question_type": "is it", "multiple_choice_answer": "no",
             "answers": [{"answer": "no", "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)],
             "image_id": 99, "answer_type": "yes/no", "question_id": 990000},
            {"question_type": "what", "answers": [], "image_id": 42, "answer_type": "other", "question_id": 420001},
        ],
    }
    q = write_json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", questions)
    a = write_json(tmp_path / "v2_mscoco_val2014_annotations.json", annotations)
    return q, a, images, answers


def test_vqav2_rows_match_the_records(tmp_path):
    q, a, images, answers = _release(tmp_path)
    rows, quarantine, out = collected("vqav2", [q, a], images, tmp_path / "vqav2.parquet")
    assert len(rows) == 2
    r = rows.set_index("record_id").loc["420000"]
    assert r.task == "common_vqa" and list(r.turns) == [{"question": "What is on the table?", "answer": "pizza"}]
    assert (r.width, r.height) == (640, 480) and r.split == "val2014"
    assert r.image_path == str((images / "COCO_val2014_000000000042.jpg").resolve())
    assert r.source == "vqav2:v2_mscoco_val2014_annotations.json"
    assert extra(r)["answers"] == answers and extra(r)["answer_type"] == "other"
    r2 = rows.set_index("record_id").loc["730001"]
    assert list(r2.turns)[0]["answer"] == "2" and (r2.width, r2.height) == (300, 500)
    reasons = dict(zip(quarantine.record_id, quarantine.reason))
    assert reasons == {"990000": "image missing", "420001": "missing field"}
    assert "2 rows written" in out and "1 images missing" in out and "COCO_val2014_000000000099.jpg" in out


def test_vqav2_wrong_file_is_one_clear_error(tmp_path):
    q, a, images, _ = _release(tmp_path)
    r = run_collect("vqav2", [a, q], images, tmp_path / "x.parquet")  # files swapped
    assert r.returncode == 2
    assert "vqav2 expects a JSON object with a 'questions' list" in r.stderr and "found a JSON object with keys" in r.stderr


@pytest.mark.parametrize("n", [1, 3])
def test_vqav2_takes_exactly_two_files(tmp_path, n):
    q, a, images, _ = _release(tmp_path)
    r = run_collect("vqav2", [q, a, a][:n], images, tmp_path / "x.parquet")
    assert r.returncode == 2 and "vqav2 takes 2 file(s)" in r.stderr
