"""Training and evaluation of schedcmp's default model: a tiny Stable Diffusion that draws emoji."""
