"""A small tree in the real VQA 1.0 / COCO / VQA-HAT layout, with the real files' quirks, and a
pytorch-vqa checkpoint (random weights, small vocabulary) plus a ResNet-152 state_dict file."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqa_interp.models import Net

QUESTIONS = [  # (question_id, image_id, question, answer, annotator maps: "ok" | "const")
    (1001, 1, "What color is the cube?", "red", ["ok", "ok", "ok"]),
    (1002, 1, "Is the cube big?", "yes", ["const", "const"]),  # every map constant: skipped
    (2001, 2, "How many dogs are there?", "two", ["ok", "ok"]),  # 'two' -> '2' in the vocab
    (3001, 3, "Is this a cat?", "yes", ["const", "ok"]),  # one constant map dropped
    (4001, 4, "What animal is this?", "aardvark", ["ok", "ok", "ok"]),  # label not in the vocab
    (4002, 4, "Where is it?", "field", []),  # no human map: not evaluated
]
IMAGES = {1: ((160, 120), "RGB"), 2: ((120, 160), "L"), 3: ((140, 140), "CMYK"), 4: ((200, 100), "RGB")}
ANSWER_VOCAB = {"yes": 0, "no": 1, "2": 2, "red": 3, "blue": 4}


def _info(kind):
    return {
        "info": {"description": "fixture"},
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "license": {"name": "fixture"},
        **kind,
    }


def build_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "val2014").mkdir(parents=True)
    (root / "vqahat_val").mkdir()
    for image_id, (size, mode) in IMAGES.items():
        rgb = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")
        rgb.convert(mode).save(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
    questions, annotations = [], []
    for qid, image_id, question, answer, maps in QUESTIONS:
        questions.append({"image_id": image_id, "question": question, "question_id": qid})
        annotations.append(
            {
                "question_id": qid,
                "image_id": image_id,
                "question_type": "what",
                "answer_type": "other",
                "multiple_choice_answer": answer,
                "answers": [
                    {"answer_id": i + 1, "answer": answer if i < 8 else "blue", "answer_confidence": "yes"}
                    for i in range(10)
                ],
            }
        )
        for n, kind in enumerate(maps, start=1):
            w, h = 70 + 10 * n, 50 + 5 * n  # other sizes than their images
            pixels = np.full((h, w), 128, np.uint8) if kind == "const" else rng.integers(0, 255, (h, w), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(root / "vqahat_val" / f"{qid}_{n}.png")
    (root / "OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps(_info({"task_type": "Open-Ended", "questions": questions}))
    )
    (root / "MultipleChoice_mscoco_val2014_questions.json").write_text(
        json.dumps(
            _info(
                {
                    "task_type": "Multiple-Choice",
                    "num_choices": 18,
                    "questions": [{**q, "multiple_choices": ["yes"] * 18} for q in questions],
                }
            )
        )
    )
    (root / "mscoco_val2014_annotations.json").write_text(json.dumps(_info({"annotations": annotations})))
    return root


def build_checkpoint(path: Path) -> Path:
    """pytorch-vqa layout: Net weights only (no backbone), DataParallel 'module.' prefix."""
    torch.manual_seed(0)
    tokens = sorted({t for _, _, q, _, _ in QUESTIONS for t in q.lower()[:-1].split(" ")})
    question_vocab = {t: i + 1 for i, t in enumerate(tokens)}
    net = Net(
        len(question_vocab) + 1,
        v_features=2048,
        embedding_features=16,
        lstm_features=32,
        mid_features=16,
        glimpses=2,
        classifier_mid=32,
        max_answers=len(ANSWER_VOCAB),
        drop=0.5,
    )
    torch.save(
        {
            "name": "fixture",
            "tracker": {},
            "config": {"output_size": 448},
            "eval": {},
            "weights": {f"module.{k}": v for k, v in net.state_dict().items()},
            "vocab": {"question": question_vocab, "answer": ANSWER_VOCAB},
        },
        path,
    )
    return path


def build_resnet152_weights(path: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet152(weights=None).state_dict(), path)
    return path


def build_scaled_tree(root: Path, n_questions: int, image_side: int = 480) -> Path:
    """A real-format tree of ``n_questions`` ordinary questions (3 per image, 3 annotator maps each,
    answers in :data:`ANSWER_VOCAB`), for measuring how a run grows with the questions."""
    rng = np.random.default_rng(1)
    (root / "val2014").mkdir(parents=True)
    (root / "vqahat_val").mkdir()
    questions, annotations = [], []
    answers = list(ANSWER_VOCAB)
    for i in range(n_questions):
        image_id = i // 3 + 1
        path = root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg"
        if not path.exists():
            Image.fromarray(rng.integers(0, 255, (image_side, image_side, 3), dtype=np.uint8), "RGB").save(path)
        qid = 10_000 + i
        answer = answers[i % len(answers)]
        questions.append(
            {
                "image_id": image_id,
                "question": ["What color is the cube?", "Is the cube big?", "How many dogs are there?"][i % 3],
                "question_id": qid,
            }
        )
        annotations.append(
            {
                "question_id": qid,
                "image_id": image_id,
                "question_type": "what",
                "answer_type": "other",
                "multiple_choice_answer": answer,
                "answers": [{"answer_id": j + 1, "answer": answer, "answer_confidence": "yes"} for j in range(10)],
            }
        )
        for n in (1, 2, 3):
            Image.fromarray(rng.integers(0, 255, (90, 120), dtype=np.uint8), "L").save(
                root / "vqahat_val" / f"{qid}_{n}.png"
            )
    (root / "OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps(_info({"task_type": "Open-Ended", "questions": questions}))
    )
    (root / "mscoco_val2014_annotations.json").write_text(json.dumps(_info({"annotations": annotations})))
    return root
