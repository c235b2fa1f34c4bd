"""Tiny randomly initialised Coqui checkpoints, built by the tests (no weights to download).

They go through exactly the loading code real models use (``TTS(model_path=...,
config_path=...)`` via ``voice.coqui_engine``); random weights make sound, not words, so what
they prove is the path: loading, synthesis, and XTTS conditioning on every clip.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_vits(folder: Path) -> Path:
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        upsample_initial_channel_decoder=32,
        num_layers_flow=1,
        num_layers_posterior_encoder=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=[8, 8, 4],
        upsample_kernel_sizes_decoder=[16, 16, 8],
        init_discriminator=False,
    )
    config = VitsConfig(
        model_args=args,
        use_phonemes=False,
        text_cleaner="english_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            characters="abcdefghijklmnopqrstuvwxyz ",
            punctuations="!'(),-.:;? ",
            phonemes=None,
            is_unique=True,
            is_sorted=True,
        ),
        audio=BaseAudioConfig(
            sample_rate=16000, hop_length=256, win_length=1024, fft_size=1024, num_mels=80
        ),
    )
    torch.manual_seed(0)
    model = Vits(config)
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


def build_tiny_xtts(folder: Path) -> Path:
    """An XTTS folder (config.json, model.pth, vocab.json) with a 1-layer, 32-wide GPT."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts, XttsArgs

    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]"]
    vocab = {tok: i for i, tok in enumerate(special)}
    for ch in "abcdefghijklmnopqrstuvwxyz'.,!?-":
        vocab[ch] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\[[a-zA-Z]+\]|."), behavior="isolated")
    tokenizer.add_special_tokens(special)
    tokenizer.save(str(folder / "vocab.json"))
    args = XttsArgs(
        gpt_layers=1,
        gpt_n_model_channels=32,
        gpt_n_heads=2,
        gpt_max_audio_tokens=24,
        gpt_max_text_tokens=100,
        gpt_max_prompt_tokens=20,
        gpt_num_audio_tokens=34,
        gpt_start_audio_token=32,
        gpt_stop_audio_token=33,
        decoder_input_dim=32,
        gpt_use_perceiver_resampler=True,
        tokenizer_file=str(folder / "vocab.json"),
    )
    config = XttsConfig(model_args=args, languages=["en"])
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer.__init__(str(folder / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.model_args.tokenizer_file = ""
    config.save_json(str(folder / "config.json"))
    return folder
