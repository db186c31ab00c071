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


def image_pipeline(folder: Path, seed: int = 0) -> Path:
    """A Stable-Diffusion-shaped pipeline (UNet, VAE, CLIP text encoder, Euler scheduler), a few hundred KB, in `folder`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    text_folder = folder / "_tokenizer"
    tok = tokenizer(text_folder, chat_template=None)
    clip_tokenizer = PreTrainedTokenizerFast.from_pretrained(text_folder, model_max_length=16)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)  # fmt: skip
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), latent_channels=4, norm_num_groups=32,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)  # fmt: skip
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,  # type: ignore[arg-type]
                                           num_attention_heads=4, max_position_embeddings=16, pad_token_id=clip_tokenizer.pad_token_id,
                                           eos_token_id=clip_tokenizer.eos_token_id, bos_token_id=0))  # fmt: skip
    scheduler = EulerDiscreteScheduler(timestep_spacing="trailing", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=clip_tokenizer, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)  # fmt: skip
    pipeline.save_pretrained(folder)
    return folder


def music_model(folder: Path, seed: int = 0) -> Path:
    """A MusicGen-shaped model (T5 text encoder, EnCodec at 32 kHz / 50 frames a second, 2-codebook decoder) in `folder`."""
    import torch
    from transformers import (
        EncodecConfig,
        GenerationConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer(folder, chat_template=None)
    codebook = 64
    text = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=2,  # type: ignore[arg-type]
                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)  # type: ignore[attr-defined]  # fmt: skip
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=4, hidden_size=16, num_residual_layers=1,
                          upsampling_ratios=[8, 5, 4, 4], codebook_size=codebook, codebook_dim=16, num_lstm_layers=1,
                          target_bandwidths=[2.2], use_causal_conv=False, normalize=False)  # fmt: skip
    decoder = MusicgenDecoderConfig(vocab_size=codebook, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, ffn_dim=64,
                                    num_codebooks=2, max_position_embeddings=2048, pad_token_id=codebook, bos_token_id=codebook,
                                    decoder_start_token_id=codebook)  # fmt: skip
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(config)
    model.generation_config = GenerationConfig(do_sample=True, guidance_scale=3.0, max_length=1500, pad_token_id=codebook,
                                               decoder_start_token_id=codebook, bos_token_id=codebook)  # fmt: skip
    model.save_pretrained(folder)
    return folder


def sentence_encoder(folder: Path, seed: int = 0) -> Path:
    """A 3-layer BERT (32 wide) with MiniLM's own WordPiece vocabulary, saved as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from moderation.acts import default_model_path

    torch.manual_seed(seed)
    bert_folder = folder / "bert"
    tok = BertTokenizerFast.from_pretrained(str(default_model_path()))
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    BertModel(config).save_pretrained(bert_folder)
    tok.save_pretrained(bert_folder)
    transformer = Transformer(str(bert_folder), max_seq_length=64)
    SentenceTransformer(modules=[transformer, Pooling(32), Normalize()], device="cpu").save(str(folder / "st"))
    return folder / "st"
