"""Tiny random models built offline from configs and saved with save_pretrained, for the real backends to load by path."""

from __future__ import annotations

from pathlib import Path

from bot.backends import markov

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer(folder: Path, chat_template: str | None = CHAT_TEMPLATE) -> object:
    """A byte-level BPE tokenizer trained on the markov corpus, with ChatML specials and (optionally) a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    raw.train_from_iterator(markov.starter_corpus().splitlines(), trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat_template:
        wrapped.chat_template = chat_template
    wrapped.save_pretrained(folder)
    return wrapped


def language_model(folder: Path, chat_template: str | None = CHAT_TEMPLATE, eos_token_id: int | None = None, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (64 wide) with its tokenizer in `folder`; `eos_token_id` overrides the end token."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer(folder, chat_template)
    eos = tok.eos_token_id if eos_token_id is None else eos_token_id  # type: ignore[attr-defined]
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,  # type: ignore[arg-type]
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=eos, pad_token_id=tok.pad_token_id, bos_token_id=None)  # type: ignore[attr-defined]  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id)  # type: ignore[attr-defined]
    model.save_pretrained(folder)
    return folder
