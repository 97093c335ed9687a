"""The default model's training code, on a handful of emoji so that it runs in seconds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from schedcmp.training import data, evaluate, model, train
from schedcmp.training.tokenizer import build_clip_tokenizer

HANDFUL = ("astronaut", "horse", "rocket", "red apple", "full moon", "flag: France")
SMALL = train.TrainConfig(
    vae_steps=12,
    vae_batch_size=6,
    unet_steps=30,
    unet_batch_size=12,
    warmup_steps=10,
    log_every=5,
    checkpoint_every=1000,
    limit_to=HANDFUL,
)


@pytest.fixture(scope="module")
def font():
    """The emoji font is required, not optional: without it there is no data to train on."""
    try:
        return data.load_font()
    except data.FontMissingError as error:
        pytest.fail(f"{error} -- `make test` installs it")


@pytest.fixture(scope="module")
def handful(font):
    return data.build_dataset(limit_to=list(HANDFUL), font=font)


@pytest.fixture(scope="module")
def trained(handful):
    """A few steps of both stages on the handful, with the initial and trained fixed-batch losses."""
    images = train.images_to_tensor(handful.images)
    log = train.LossLog()
    vae = train.train_vae(images, SMALL, log=log)
    latents = train.encode_latents(vae, images)
    names = [item.name for item in handful.emoji]
    tokenizer = build_clip_tokenizer([c for name in names for c in data.caption_variants(name)])
    token_ids, empty_ids = train.tokenize_captions(tokenizer, names)
    batch = train.fixed_batch(latents, token_ids)
    initial = train.train_denoiser(latents, token_ids, empty_ids, len(tokenizer), replace(SMALL, unet_steps=0))
    unet, text_encoder = train.train_denoiser(latents, token_ids, empty_ids, len(tokenizer), SMALL, log=log)
    return {
        "vae": vae,
        "unet": unet,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "log": log,
        "loss_before": train.fixed_batch_loss(*initial, batch, SMALL),
        "loss_after": train.fixed_batch_loss(unet, text_encoder, batch, SMALL),
    }


def test_dataset_renders_each_emoji_on_white(handful):
    assert [item.name for item in handful.emoji] == [n for n in map(str, _candidate_order()) if n in HANDFUL]
    assert handful.images.shape == (len(HANDFUL), data.IMAGE_SIZE, data.IMAGE_SIZE, 3)
    corners = handful.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()
    # Every image has a drawn subject, not just background.
    assert ((handful.images < 200).any(axis=3).sum(axis=(1, 2)) > 200).all()


def _candidate_order() -> list[str]:
    return [item.name for item in data.candidate_emoji()]


def test_candidates_are_fully_qualified_without_skin_tones():
    candidates = data.candidate_emoji()
    assert 1800 < len(candidates) < 2100
    assert not any(ord(c) in data.SKIN_TONE_MODIFIERS for item in candidates for c in item.chars)
    names = {item.name for item in candidates}
    assert {"astronaut", "horse", "rocket", "red apple", "full moon", "flag: France"} <= names


def test_tokenizer_has_no_unknown_tokens_for_captions():
    captions = [c for name in HANDFUL for c in data.caption_variants(name)]
    tokenizer = build_clip_tokenizer(captions)
    ids = tokenizer(captions + ["zebra ✨ on the moon"]).input_ids
    assert all(seq[0] == tokenizer.bos_token_id and seq[-1] == tokenizer.eos_token_id for seq in ids)
    assert tokenizer.unk_token_id not in {i for seq in ids[:-1] for i in seq[1:-1]}
    assert tokenizer.tokenize("red apple") == ["red</w>", "apple</w>"]


def test_training_lowers_the_loss_on_a_fixed_batch(trained):
    assert trained["loss_after"] < 0.8 * trained["loss_before"]
    vae_losses = [row[2] for row in trained["log"].rows if row[0] == "vae"]
    assert vae_losses[-1] < vae_losses[0]


def test_decoder_refinement_leaves_the_encoder_alone(handful):
    images = train.images_to_tensor(handful.images)
    config = replace(SMALL, vae_steps=2, decoder_steps=3, decoder_batch_size=4)
    vae = train.train_vae(images, config)
    latents = train.encode_latents(vae, images)
    encoder_before = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    log = train.LossLog()
    train.refine_decoder(vae, latents, images, config, log=log)
    assert all(torch.equal(v, vae.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert not all(torch.equal(v, vae.decoder.state_dict()[k]) for k, v in decoder_before.items())
    assert [row[:2] for row in log.rows] == [("decoder", 3)]


def test_saved_folder_loads_as_a_pipeline_and_draws(trained, tmp_path: Path):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    train.save_pipeline(tmp_path, trained["vae"], trained["unet"], trained["text_encoder"], trained["tokenizer"])
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    scheduler_config = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config == model.scheduler_config()
    weights = [p.name for p in tmp_path.rglob("*") if p.suffix in {".bin", ".safetensors", ".pt", ".ckpt"}]
    assert weights and all(name.endswith(".safetensors") for name in weights)

    pipeline = DiffusionPipeline.from_pretrained(tmp_path)
    assert isinstance(pipeline, StableDiffusionPipeline)
    assert pipeline.unet.dtype == torch.float32
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(0)
    image = pipeline("horse", num_inference_steps=2, generator=generator).images[0]
    assert image.size == (data.IMAGE_SIZE, data.IMAGE_SIZE)  # the native size, with no size arguments
    assert np.isfinite(np.asarray(image, dtype=float)).all()


def test_resume_continues_to_the_same_weights(handful, tmp_path: Path):
    # One thread: a changing thread count may change the summation order, hence the last bits.
    config = replace(SMALL, vae_steps=6, vae_batch_size=4, log_every=1, checkpoint_every=3, threads=1)
    images = train.images_to_tensor(handful.images)
    straight = train.train_vae(images, config)

    class Interrupt(Exception):
        pass

    def stop_at_step_four(line: str) -> None:
        if line.startswith("vae step 4/"):
            raise Interrupt

    checkpoint = tmp_path / "vae.pt"
    with pytest.raises(Interrupt):
        train.train_vae(images, config, checkpoint, report=stop_at_step_four)
    resumed = train.train_vae(images, config, checkpoint, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_extra_unet_steps_restart_the_learning_rate_cycle():
    config = replace(SMALL, unet_steps=30, unet_extra_steps=20, unet_extra_learning_rate=3e-4)
    first = [train.unet_learning_rate(step, config) for step in range(30)]
    assert first == [train.learning_rate(step, 30, config.unet_learning_rate, 10) for step in range(30)]
    second = [train.unet_learning_rate(step, config) for step in range(30, 50)]
    assert second[0] == pytest.approx(3e-4 / 10)  # warmed up again, over 10 steps
    assert max(second) == pytest.approx(3e-4) and second[-1] < second[10]


def test_extra_unet_steps_continue_a_finished_checkpoint(handful, tmp_path: Path):
    images = train.images_to_tensor(handful.images)
    config = replace(SMALL, vae_steps=2, unet_steps=4, unet_batch_size=4, log_every=1, threads=1)
    latents = train.encode_latents(train.train_vae(images, config), images)
    names = [item.name for item in handful.emoji]
    tokenizer = build_clip_tokenizer([c for name in names for c in data.caption_variants(name)])
    token_ids, empty_ids = train.tokenize_captions(tokenizer, names)
    checkpoint, log = tmp_path / "unet.pt", train.LossLog()
    train.train_denoiser(latents, token_ids, empty_ids, len(tokenizer), config, checkpoint)
    extended = replace(config, unet_extra_steps=3)
    train.train_denoiser(latents, token_ids, empty_ids, len(tokenizer), extended, checkpoint, resume=True, log=log)
    assert [row[1] for row in log.rows] == [1, 2, 3, 4, 5, 6, 7]
    assert torch.load(checkpoint, weights_only=False)["step"] == 7


def test_evaluation_list_is_fixed_and_excludes_flags():
    names = _candidate_order()
    captions = evaluate.evaluation_captions(names)
    assert captions[:5] == list(evaluate.FIXED_CAPTIONS)
    assert len(captions) == len(set(captions)) == 35
    assert captions == evaluate.evaluation_captions(list(reversed(names)))
    flags = {item.name for item in data.candidate_emoji() if item.is_flag}
    assert not flags & set(captions) and all(len(c.split()) <= 3 for c in captions)


def test_perfect_drawings_score_near_full_marks(font):
    # A subset of references keeps this fast; the drawings are re-rendered smaller and off-centre.
    names = _candidate_order()
    captions = evaluate.evaluation_captions(names)[:12]
    references = evaluate.References.build(font, limit_to=captions + names[:150:3])
    outcomes = evaluate.score(evaluate.perfect_drawings(captions, font), references)
    assert evaluate.hit_rate(outcomes) >= 0.9


def test_normalise_ignores_position_and_scale(font):
    drawing = evaluate.perfect_drawings(["rocket"], font)["rocket"]
    shifted = data.place_on_white(data.render_glyph(font, "\U0001f680"), size=64, margin=12)
    difference = np.abs(evaluate.normalise(drawing) - evaluate.normalise(shifted)).mean()
    assert difference < 0.05


def test_missing_font_is_a_clear_error(tmp_path: Path):
    with pytest.raises(data.FontMissingError, match="fonts-noto-color-emoji"):
        data.load_font(tmp_path / "NotoColorEmoji.ttf")


def test_shipped_default_model_folder():
    folder = Path(data.__file__).parent.parent / "default_model"
    weights = [p for p in folder.rglob("*") if p.is_file() and p.suffix in {".bin", ".safetensors", ".pt", ".ckpt"}]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 40 * 1024 * 1024
    written = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    expected = model.scheduler_config()
    assert written.keys() == expected.keys()
    assert {k: v for k, v in written.items() if k != "_diffusers_version"} == {
        k: v for k, v in expected.items() if k != "_diffusers_version"
    }
    assert (folder / "README.md").is_file()
