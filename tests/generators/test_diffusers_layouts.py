"""The SDXL layout (two text encoders, size/crop conditioning: SDXL, SDXL-Turbo) through the gateway's loaders.

The demo pipeline covers the SD 1.x/2.x layout (SD-Turbo is SD 2.1's); this builds a tiny SDXL pipeline from configs
with seeded weights (the component sizes of diffusers' own SDXL fast tests), saves it, and loads it the way a
registry entry is loaded: ``AutoPipelineForText2Image`` / ``AutoPipelineForImage2Image`` on a local directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generators.base import GenerationSpec
from generators.demo import write_tokenizer_files
from generators.diffusers_txt2img import DiffusersImg2Img, DiffusersTxt2Img, directory_revision


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    out = tmp_path_factory.mktemp("sdxl-tiny")
    write_tokenizer_files(out / "tokenizer")
    write_tokenizer_files(out / "tokenizer_2")
    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer", local_files_only=True, model_max_length=77)
    tokenizer_2 = CLIPTokenizer.from_pretrained(out / "tokenizer_2", local_files_only=True, model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size/crop numbers x 8 + the pooled text embedding (32)
        cross_attention_dim=64,  # the two text encoders' hidden states side by side
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=128,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    config = CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5, hidden_act="gelu",
        projection_dim=32, vocab_size=len(tokenizer), max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    pipe: Any = StableDiffusionXLPipeline(
        vae=vae, unet=unet, text_encoder=CLIPTextModel(config), text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="trailing"),
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def test_an_sdxl_directory_loads_and_renders_reproducibly(sdxl_dir: Path) -> None:
    gen = DiffusersTxt2Img("sdxl-tiny", sdxl_dir, device="cpu", default_steps=2)
    assert type(gen._pipe).__name__ == "StableDiffusionXLPipeline"
    assert gen.revision == directory_revision(sdxl_dir)
    spec = GenerationSpec(model="sdxl-tiny", width=64, height=64, n=2, seed=4, prompt="a red bicycle")
    first, again = gen.generate(spec), gen.generate(spec)
    assert [g.seed for g in first] == [4, 5] and first[0].image.size == (64, 64)
    assert np.array_equal(np.asarray(first[0].image), np.asarray(again[0].image))
    assert not np.array_equal(np.asarray(first[0].image), np.asarray(first[1].image))


def test_an_sdxl_directory_serves_image_to_image_too(sdxl_dir: Path) -> None:
    txt = DiffusersTxt2Img("sdxl-tiny", sdxl_dir, device="cpu", default_steps=2)
    start = txt.generate(GenerationSpec(model="sdxl-tiny", width=64, height=64, seed=1, prompt="a house"))[0].image
    img2img = DiffusersImg2Img("sdxl-tiny-i2i", sdxl_dir, device="cpu", default_steps=4)
    assert type(img2img._pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    [out] = img2img.generate(GenerationSpec(model="sdxl-tiny-i2i", width=64, height=64, seed=2, prompt="a house",
                                            init_image=start, strength=0.5))
    assert out.image.size == (64, 64)
