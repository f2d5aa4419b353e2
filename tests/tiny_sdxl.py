"""A tiny random Stable Diffusion XL pipeline, built in code and saved as a model folder.

No weights can be downloaded here, so the tests of the diffusers backend load this instead:
the same parts as SDXL base (a UNet with SDXL's "text_time" conditioning, a VAE, two CLIP text
encoders, the second with a projection for the pooled embedding, two tokenizers), each a few
thousand parameters, the way the library's own fast tests build theirs. As in SDXL, the two
encoders differ in width (32 and 48 here) and the second's projection in a third (40), so that
a test can tell which encoder an embedding came from. ``save_refiner`` builds the refiner the
same way: the second encoder only, with the aesthetic score in its conditioning. Its images
are noise, but they go through the backend's real loading and generation code on CPU in
milliseconds.

The tokenizers are made from a vocabulary of single letters written to the folder: every
letter of a word is one token, so a prompt's token count is easy to predict.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

HIDDEN = 32  # the first text encoder's width
HIDDEN_2 = 48  # the second's; the UNet attends to both, side by side (HIDDEN + HIDDEN_2)
POOLED = 40  # the second encoder's projection: the pooled embedding's width
MAX_TOKENS = 77  # CLIP's window, as in SDXL
TIME_IDS = 8  # the width of each of SDXL's size/crop conditioning numbers' embedding


def tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the letters, alone or ending a word."""
    letters = string.ascii_lowercase
    words = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    vocab = {word: index for index, word in enumerate(words)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    made = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    made.model_max_length = MAX_TOKENS
    return made


def text_config(hidden: int, projection: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=64,
        hidden_act="gelu",
        projection_dim=projection,
        max_position_embeddings=MAX_TOKENS,
    )


def unet(cross_attention: int, time_ids: int) -> UNet2DConditionModel:
    """SDXL's UNet, tiny: ``time_ids`` conditioning numbers (6 for the base: sizes and crop; 5
    for the refiner: sizes, crop and aesthetic score) besides the pooled text."""
    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=time_ids * TIME_IDS + POOLED,
        cross_attention_dim=cross_attention,
        norm_num_groups=1,
    )


def vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=[8, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
        force_upcast=True,  # as SDXL's own VAE says of itself
    )


def scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )


def second_encoder() -> CLIPTextModelWithProjection:
    return CLIPTextModelWithProjection(text_config(HIDDEN_2, POOLED))


def pipeline(scratch: Path) -> StableDiffusionXLPipeline:
    torch.manual_seed(0)  # the same tiny model at every run
    return StableDiffusionXLPipeline(
        vae=vae(),
        text_encoder=CLIPTextModel(text_config(HIDDEN, HIDDEN)),
        text_encoder_2=second_encoder(),
        tokenizer=tokenizer(scratch / "tokenizer"),
        tokenizer_2=tokenizer(scratch / "tokenizer_2"),
        unet=unet(HIDDEN + HIDDEN_2, 6),
        scheduler=scheduler(),
    )


def refiner(scratch: Path) -> StableDiffusionXLImg2ImgPipeline:
    """The refiner, as SDXL's: no first encoder, the aesthetic score, no zeros for an empty
    negative prompt."""
    torch.manual_seed(1)
    return StableDiffusionXLImg2ImgPipeline(
        vae=vae(),
        text_encoder=None,
        text_encoder_2=second_encoder(),
        tokenizer=None,
        tokenizer_2=tokenizer(scratch / "tokenizer_2"),
        unet=unet(HIDDEN_2, 5),
        scheduler=scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


def save(folder: Path) -> Path:
    """The tiny model saved in ``folder`` (a model folder as ``from_pretrained`` reads it)."""
    pipeline(folder.with_name(folder.name + "-scratch")).save_pretrained(folder)
    return folder


def save_refiner(folder: Path) -> Path:
    """The tiny refiner saved in ``folder``."""
    refiner(folder.with_name(folder.name + "-scratch")).save_pretrained(folder)
    return folder
