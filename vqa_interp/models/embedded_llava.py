"""The embedded LLaVA (``model=embedded_llava``): a small ``LlavaForConditionalGeneration`` (a CLIP-style
vision tower and a Llama-style LM) with its own word-level tokenizer (an ``<image>`` token, a chat
template), built from configs and trained here to *generate* the answers of the embedded benchmark.

It is an ``hf_vlm`` model in every respect (:mod:`vqa_interp.models.generative`): saved with
``save_pretrained`` (model and processor), loaded back through ``AutoModelForImageTextToText`` /
``AutoProcessor``, so the embedded default exercises exactly the path a real LLaVA takes.

Training (:func:`vqa_interp.models.training.train_generative`) maximises the teacher-forced
log-probability of each question's answer (its most frequent human answer, normalised, then the
end-of-sequence token) after its prompt: the number the methods explain.
"""

from __future__ import annotations

from typing import Sequence

from vqa_interp.data.answers import normalize_answer

SPECIAL = ("<pad>", "<unk>", "<s>", "</s>")
IMAGE_TOKEN = "<image>"
TEMPLATE_WORDS = ("user", "assistant", ":", "?", ",", ".", "'")
# one user turn: the image, then the question; the answer follows "assistant :"
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}user : {% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)


def build_processor(words: Sequence[str], image_size: int, patch_size: int):
    """A ``LlavaProcessor``: CLIP image processing at ``image_size`` and a lower-casing word-level
    tokenizer over ``words`` (plus the special and template tokens)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys([*SPECIAL, IMAGE_TOKEN, *TEMPLATE_WORDS, *sorted(words)]))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )
    images = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=fast,
        patch_size=patch_size,
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
    )


def build_llava(processor, sizes: dict, image_size: int):
    """A ``LlavaForConditionalGeneration`` (random weights, eager attention) for ``processor``'s
    vocabulary; ``sizes``: ``vision`` and ``text`` config sizes and ``patch_size``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tokenizer = processor.tokenizer
    patch = int(sizes.get("patch_size", 8))
    vision = CLIPVisionConfig(image_size=image_size, patch_size=patch, **dict(sizes.get("vision", {})))
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **dict(sizes.get("text", {})),
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    config._attn_implementation = "eager"
    return LlavaForConditionalGeneration(config)


def untrained_parts(model_settings, questions: Sequence[str], answers: Sequence[Sequence[str]]):
    """``(hf model, processor)`` of the embedded LLaVA before training: its tokenizer's words from the
    training questions and answers, its sizes from ``model.llava``."""
    from tokenizers import pre_tokenizers

    sizes = dict(model_settings.options.get("llava", {}))
    split = pre_tokenizers.Whitespace().pre_tokenize_str  # the tokenizer's own word splitting
    words = {w for q in questions for w, _ in split(q.lower())}
    words |= {w for a in answers for answer in a for w, _ in split(normalize_answer(answer))}
    size = int(model_settings.input_size)
    processor = build_processor(sorted(words), size, int(sizes.get("patch_size", 8)))
    return build_llava(processor, sizes, size), processor
