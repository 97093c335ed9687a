"""Train the default model: a tiny VAE, then the UNet and text encoder on cached latents, then the decoder.

    python -m schedcmp.training.train --out schedcmp/default_model --workdir train-run

Progress goes to stderr; checkpoints and the loss log go to the work folder, and `--resume` continues from
the last checkpoint there, with the same random streams, so a resumed run ends with the same weights.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from schedcmp.training import data, model
from schedcmp.training.threads import ThreadGovernor
from schedcmp.training.tokenizer import MAX_LENGTH, build_clip_tokenizer

Report = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    image_size: int = data.IMAGE_SIZE
    vae_steps: int = 700
    vae_batch_size: int = 32
    vae_learning_rate: float = 1e-3
    # Small: the latent only has to be decodable and roughly unit-scale, not a smooth prior.
    kl_weight: float = 1e-6
    unet_steps: int = 2400
    # Stop the UNet stage early at this step, keeping the schedule of `unet_steps` (the shipped model was
    # cut short by a deadline; this reproduces it exactly). None runs the whole schedule.
    unet_stop_at: int | None = None
    # A second learning-rate cycle (warm restart: warm-up, then cosine) of this many steps after `unet_steps`,
    # continuing from the first cycle's checkpoint with the same batch size and EMA; `unet_stop_at` counts
    # steps over both cycles.
    unet_extra_steps: int = 0
    unet_extra_learning_rate: float = 3e-4
    # Decoder-only fine-tuning on the cached latents: the short first stage leaves colours off, and a
    # frozen encoder keeps the latents the UNet learnt unchanged.
    decoder_steps: int = 400
    decoder_batch_size: int = 32
    decoder_learning_rate: float = 5e-4
    # Noise added to the latents the decoder sees, so that it also decodes the UNet's imperfect ones.
    decoder_latent_noise: float = 0.1
    unet_batch_size: int = 64
    unet_learning_rate: float = 6e-4
    warmup_steps: int = 100
    # Empty prompts in 10% of the batches teach the unconditional prediction classifier-free guidance needs.
    caption_dropout: float = 0.1
    ema_decay: float = 0.998
    # Min-SNR-gamma loss weighting (Hang et al. 2023): stops the easy low-noise timesteps dominating.
    min_snr_gamma: float = 5.0
    checkpoint_every: int = 100
    # Upper bound on torch threads (None: all cores); fewer are used while other processes are busy.
    threads: int | None = None
    log_every: int = 10
    # Captions to keep (tests train on a handful); None keeps every emoji the font draws.
    limit_to: tuple[str, ...] | None = field(default=None)


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def unet_learning_rate(step: int, config: TrainConfig) -> float:
    """The first cycle over `unet_steps`, then the warm restart over `unet_extra_steps`, if any."""
    if step < config.unet_steps:
        return learning_rate(step, config.unet_steps, config.unet_learning_rate, config.warmup_steps)
    return learning_rate(
        step - config.unet_steps, config.unet_extra_steps, config.unet_extra_learning_rate, config.warmup_steps
    )


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1], the range the VAE works in."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def save_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def save_vae_checkpoint(path: Path, step: int, vae, optimizer, generator, log: "LossLog") -> None:
    """The VAE and decoder stages resume from the same kind of checkpoint."""
    save_atomically(
        {
            "step": step,
            "vae": vae.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "log": list(log.rows),
        },
        path,
    )


def load_vae_checkpoint(path: Path | None, stage: str, vae, optimizer, generator, log: "LossLog") -> int:
    """Restore what save_vae_checkpoint wrote, if it is there; -> the step to continue from."""
    if path is None or not path.exists():
        return 0
    state = torch.load(path, weights_only=False)
    vae.load_state_dict(state["vae"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    log.restore(stage, state["log"])
    return state["step"]


@dataclass
class LossLog:
    """Mean loss over each `log_every` steps, per stage."""

    rows: list[tuple[str, int, float, float]] = field(default_factory=list)  # stage, step, loss, lr

    def restore(self, stage: str, saved_rows: list) -> None:
        """Take one stage's rows from a checkpoint, keeping the other stages' rows."""
        self.rows[:] = [r for r in self.rows if r[0] != stage] + [tuple(r) for r in saved_rows if r[0] == stage]

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["stage", "step", "loss", "learning_rate"])
            writer.writerows(self.rows)


def due(step: int, every: int, last: int) -> bool:
    """After 0-based `step`: has a multiple of `every` steps been done, or the stage's last one?"""
    return (step + 1) % every == 0 or step + 1 == last


def optimiser_step(optimizer, parameters, loss: torch.Tensor, lr: float) -> None:
    """One step at this learning rate, every stage alike: gradients of `loss`, clipped to norm 1."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()


class ProgressReporter:
    """A stage's running loss: every `log_every` steps (and at its last) the mean goes to the loss log and,
    with a rate and an ETA, to the report."""

    def __init__(
        self,
        stage: str,
        total: int,
        start: int,
        report: Report | None,
        log: LossLog,
        log_every: int,
        last: int | None = None,
    ):
        self.stage, self.total, self.start, self.report = stage, total, start, report
        self.log, self.log_every, self.last = log, log_every, total if last is None else last
        self.running: list[float] = []
        self.began = time.monotonic()

    def add(self, step: int, loss: float, lr: float) -> None:
        self.running.append(loss)
        if due(step, self.log_every, self.last):
            mean = float(np.mean(self.running))
            self.log.rows.append((self.stage, step + 1, mean, lr))
            self.running.clear()
            self.show(step, mean, lr)

    def show(self, step: int, loss: float, lr: float) -> None:
        if self.report is None:
            return
        elapsed = time.monotonic() - self.began
        rate = (step + 1 - self.start) / max(elapsed, 1e-9)
        eta = (self.total - step - 1) / max(rate, 1e-9)
        self.report(
            f"{self.stage} step {step + 1}/{self.total} loss {loss:.4f} lr {lr:.2e} "
            f"{rate:.2f} steps/s eta {eta / 60:.1f} min threads {torch.get_num_threads()}"
        )


def train_vae(
    images: torch.Tensor,
    config: TrainConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
    report: Report | None = None,
    log: LossLog | None = None,
):
    """Reconstruction (L1) plus a small KL term; returns the trained AutoencoderKL."""
    torch.manual_seed(config.seed)
    vae = model.build_vae(config.image_size)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    log = log if log is not None else LossLog()
    start = load_vae_checkpoint(checkpoint, "vae", vae, optimizer, generator, log) if resume else 0
    progress = ProgressReporter("vae", config.vae_steps, start, report, log, config.log_every)
    governor = ThreadGovernor(config.threads)
    vae.train()
    for step in range(start, config.vae_steps):
        governor.update()
        lr = learning_rate(step, config.vae_steps, config.vae_learning_rate, config.warmup_steps // 2)
        index = torch.randint(0, len(images), (config.vae_batch_size,), generator=generator)
        batch = images[index]  # (B, 3, H, W)
        posterior = vae.encode(batch).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        reconstruction = vae.decode(latents).sample
        loss = F.l1_loss(reconstruction, batch) + config.kl_weight * posterior.kl().mean()
        optimiser_step(optimizer, vae.parameters(), loss, lr)
        progress.add(step, loss.item(), lr)
        if checkpoint is not None and due(step, config.checkpoint_every, config.vae_steps):
            save_vae_checkpoint(checkpoint, step + 1, vae, optimizer, generator, log)
    vae.eval()
    return vae


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Posterior means, scaled to unit standard deviation; the scale is recorded in the VAE config."""
    means = torch.cat(
        [vae.encode(images[i : i + batch_size]).latent_dist.mean for i in range(0, len(images), batch_size)]
    )
    scaling_factor = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    return means * scaling_factor  # (N, 4, h, w)


def refine_decoder(
    vae,
    latents: torch.Tensor,
    images: torch.Tensor,
    config: TrainConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
    report: Report | None = None,
    log: LossLog | None = None,
):
    """Fine-tune the decoder (encoder frozen) to map the cached, scaled latents back to the images."""
    torch.manual_seed(config.seed + 2)
    decoder_parameters = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    optimizer = torch.optim.AdamW(decoder_parameters, lr=config.decoder_learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed + 2)
    log = log if log is not None else LossLog()
    start = load_vae_checkpoint(checkpoint, "decoder", vae, optimizer, generator, log) if resume else 0
    progress = ProgressReporter("decoder", config.decoder_steps, start, report, log, config.log_every)
    governor = ThreadGovernor(config.threads)
    scaling_factor = vae.config.scaling_factor
    vae.decoder.train()
    for step in range(start, config.decoder_steps):
        governor.update()
        lr = learning_rate(step, config.decoder_steps, config.decoder_learning_rate, config.warmup_steps // 2)
        index = torch.randint(0, len(images), (config.decoder_batch_size,), generator=generator)
        noise = torch.randn(latents[index].shape, generator=generator) * config.decoder_latent_noise
        reconstruction = vae.decode((latents[index] + noise) / scaling_factor).sample
        loss = F.l1_loss(reconstruction, images[index])
        optimiser_step(optimizer, decoder_parameters, loss, lr)
        progress.add(step, loss.item(), lr)
        if checkpoint is not None and due(step, config.checkpoint_every, config.decoder_steps):
            save_vae_checkpoint(checkpoint, step + 1, vae, optimizer, generator, log)
    vae.eval()
    return vae


def tokenize_captions(tokenizer, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of every caption variant, (N, variants, L), and of the empty prompt, (L,)."""
    variants = [data.caption_variants(name) for name in names]
    flat = [caption for per_name in variants for caption in per_name]
    ids = tokenizer(flat, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids[0]
    return ids.view(len(names), len(variants[0]), MAX_LENGTH), empty


def denoising_loss(unet, text_encoder, latents, token_ids, timesteps, noise, noise_scheduler, min_snr_gamma):
    """Min-SNR-weighted epsilon-prediction MSE for one batch."""
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    hidden = text_encoder(token_ids).last_hidden_state  # (B, L, 128)
    prediction = unet(noisy, timesteps, hidden).sample
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(latents.device)[timesteps]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weight = torch.clamp(snr, max=min_snr_gamma) / snr
    per_sample = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
    return (weight * per_sample).mean()


def fixed_batch(latents: torch.Tensor, token_ids: torch.Tensor, seed: int = 1234):
    """A batch with its timesteps and noise fixed: one latent per emoji, the bare name as caption."""
    generator = torch.Generator().manual_seed(seed)
    timesteps = torch.linspace(50, 950, len(latents)).long()
    noise = torch.randn(latents.shape, generator=generator)
    return latents, token_ids[:, 0], timesteps, noise


@torch.no_grad()
def fixed_batch_loss(unet, text_encoder, batch, config: TrainConfig) -> float:
    latents, ids, timesteps, noise = batch
    return denoising_loss(
        unet, text_encoder, latents, ids, timesteps, noise, model.training_noise_scheduler(), config.min_snr_gamma
    ).item()


@torch.no_grad()
def update_ema(ema_module, module, decay: float) -> None:
    ema_params = list(ema_module.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in module.parameters()], 1.0 - decay)


# The modules a UNet checkpoint holds, by key.
UNET_MODULES = ("unet", "text_encoder", "ema_unet", "ema_text_encoder")


def train_denoiser(
    latents: torch.Tensor,
    token_ids: torch.Tensor,
    empty_ids: torch.Tensor,
    vocab_size: int,
    config: TrainConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
    report: Report | None = None,
    log: LossLog | None = None,
):
    """UNet and text encoder trained together; returns their exponential moving averages."""
    torch.manual_seed(config.seed + 1)
    unet = model.build_unet(latents.shape[-1])
    text_encoder = model.build_text_encoder(vocab_size)
    modules = dict(zip(UNET_MODULES, (unet, text_encoder, copy.deepcopy(unet), copy.deepcopy(text_encoder))))
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.unet_learning_rate, weight_decay=1e-2)
    noise_scheduler = model.training_noise_scheduler()
    generator = torch.Generator().manual_seed(config.seed + 1)
    log = log if log is not None else LossLog()
    start = 0
    if resume and checkpoint is not None and checkpoint.exists():
        start = restore_denoiser(checkpoint, modules, optimizer, generator, log)
    total = config.unet_steps + config.unet_extra_steps
    last_step = total if config.unet_stop_at is None else min(total, config.unet_stop_at)
    progress = ProgressReporter("unet", total, start, report, log, config.log_every, last_step)
    governor = ThreadGovernor(config.threads)
    unet.train()
    text_encoder.train()
    for step in range(start, last_step):
        governor.update()
        lr = unet_learning_rate(step, config)
        batch = denoiser_batch(latents, token_ids, empty_ids, config, noise_scheduler, generator)
        loss = denoising_loss(unet, text_encoder, *batch, noise_scheduler, config.min_snr_gamma)
        optimiser_step(optimizer, parameters, loss, lr)
        # Warm-up of the EMA decay, so that a short run's average is not dominated by the initial weights.
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        update_ema(modules["ema_unet"], unet, decay)
        update_ema(modules["ema_text_encoder"], text_encoder, decay)
        progress.add(step, loss.item(), lr)
        if checkpoint is not None and due(step, config.checkpoint_every, last_step):
            state = {key: module.state_dict() for key, module in modules.items()}
            state |= {"step": step + 1, "optimizer": optimizer.state_dict(), "generator": generator.get_state()}
            save_atomically(state | {"log": list(log.rows)}, checkpoint)
    modules["ema_unet"].eval()
    modules["ema_text_encoder"].eval()
    return modules["ema_unet"], modules["ema_text_encoder"]


def restore_denoiser(checkpoint: Path, modules: dict, optimizer, generator: torch.Generator, log: LossLog) -> int:
    """A UNet checkpoint's modules, optimiser, generator and loss log restored in place. -> the step to resume at."""
    state = torch.load(checkpoint, weights_only=False)
    for key, module in modules.items():
        module.load_state_dict(state[key])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    log.restore("unet", state["log"])
    return state["step"]


def denoiser_batch(latents, token_ids, empty_ids, config: TrainConfig, noise_scheduler, generator):
    """One training batch, drawn from `generator` in a fixed order (a resumed run draws the same ones).
    -> (clean latents, token ids with captions dropped, timesteps, noise)."""
    index = torch.randint(0, len(latents), (config.unet_batch_size,), generator=generator)
    variant = torch.randint(0, token_ids.shape[1], (config.unet_batch_size,), generator=generator)
    ids = token_ids[index, variant]  # (B, L)
    dropped = torch.rand(config.unet_batch_size, generator=generator) < config.caption_dropout
    ids = torch.where(dropped[:, None], empty_ids[None, :], ids)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (config.unet_batch_size,), generator=generator
    )
    noise = torch.randn(latents[index].shape, generator=generator)
    return latents[index], ids, timesteps, noise


def save_pipeline(folder: Path, vae, unet, text_encoder, tokenizer) -> None:
    """A StableDiffusionPipeline folder without safety checker, with the hand-written scheduler config."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    scheduler = PNDMScheduler.from_config(model.scheduler_config())
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    pipeline.save_pretrained(folder, safe_serialization=True)
    model.write_scheduler_config(folder)


def draw_loss_curve(log: LossLog, path: Path, width: int = 640, height: int = 240) -> None:
    """One panel per stage, log-scaled loss against step (Pillow only)."""
    from PIL import Image, ImageDraw

    stages = [s for s in ("vae", "unet", "decoder") if any(r[0] == s for r in log.rows)]
    image = Image.new("RGB", (width, height * max(1, len(stages))), "white")
    draw = ImageDraw.Draw(image)
    margin = 40
    for panel, stage in enumerate(stages):
        rows = [r for r in log.rows if r[0] == stage]
        steps = np.array([r[1] for r in rows], dtype=float)
        losses = np.log10(np.array([max(r[2], 1e-8) for r in rows]))
        top = panel * height
        low, high = losses.min(), losses.max()
        span = max(high - low, 1e-6)
        points = [
            (
                margin + (s / steps.max()) * (width - 2 * margin),
                top + margin / 2 + (high - v) / span * (height - 1.5 * margin),
            )
            for s, v in zip(steps, losses)
        ]
        draw.rectangle([margin, top + margin / 2, width - margin, top + height - margin], outline="gray")
        if len(points) > 1:
            draw.line(points, fill="navy", width=2)
        draw.text(
            (margin, top + 4), f"{stage} loss (log scale): {10**high:.4f} -> {10 ** losses[-1]:.4f}", fill="black"
        )
        draw.text((margin, top + height - margin + 4), f"step 0 .. {int(steps.max())}", fill="black")
    image.save(path)


def run_training(config: TrainConfig, out: Path, workdir: Path, resume: bool, report: Report | None) -> None:
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = data.build_dataset(config.image_size, list(config.limit_to) if config.limit_to else None)
    names = [item.name for item in dataset.emoji]
    if report:
        report(f"data: {len(names)} emoji rendered, {len(dataset.left_out)} left out")
    with (workdir / "left_out.tsv").open("w") as handle:
        for item, reason in dataset.left_out:
            handle.write(f"{item.chars}\t{item.name}\t{reason}\n")
    tokenizer = build_clip_tokenizer([c for name in names for c in data.caption_variants(name)])
    images = images_to_tensor(dataset.images)
    log = LossLog()
    vae = train_vae(images, config, workdir / "vae_checkpoint.pt", resume, report, log)
    latents = encode_latents(vae, images)
    token_ids, empty_ids = tokenize_captions(tokenizer, names)
    unet, text_encoder = train_denoiser(
        latents, token_ids, empty_ids, len(tokenizer), config, workdir / "unet_checkpoint.pt", resume, report, log
    )
    vae = refine_decoder(vae, latents, images, config, workdir / "decoder_checkpoint.pt", resume, report, log)
    out.mkdir(parents=True, exist_ok=True)
    save_pipeline(out, vae, unet, text_encoder, tokenizer)
    log.write_csv(out / "loss.csv")
    draw_loss_curve(log, out / "loss_curve.png")
    minutes = (time.monotonic() - started) / 60
    (workdir / "run.txt").write_text(f"{asdict(config)}\nwall time this invocation: {minutes:.1f} min\n")
    if report:
        report(f"saved {out} after {minutes:.1f} min")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m schedcmp.training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="pipeline folder to write")
    parser.add_argument("--workdir", type=Path, required=True, help="checkpoints and logs (outside the repository)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --workdir")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--unet-stop-at", type=int, default=None, help="end the UNet stage early at this step")
    parser.add_argument(
        "--extra-unet-steps",
        type=int,
        default=defaults.unet_extra_steps,
        help="a second learning-rate cycle of this many UNet steps after --unet-steps "
        "(with --resume: continues a finished run)",
    )
    parser.add_argument("--extra-unet-learning-rate", type=float, default=defaults.unet_extra_learning_rate)
    parser.add_argument("--decoder-steps", type=int, default=defaults.decoder_steps)
    parser.add_argument("--threads", type=int, default=None, help="most torch threads to use (default: all cores)")
    parser.add_argument("--limit", nargs="*", default=None, metavar="CAPTION", help="train on these captions only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = TrainConfig(
        seed=args.seed,
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        decoder_steps=args.decoder_steps,
        unet_stop_at=args.unet_stop_at,
        unet_extra_steps=args.extra_unet_steps,
        unet_extra_learning_rate=args.extra_unet_learning_rate,
        limit_to=tuple(args.limit) if args.limit else None,
        threads=args.threads,
    )

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        run_training(config, args.out, args.workdir, args.resume, report)
    except data.FontMissingError as error:
        report(f"error: {error}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
