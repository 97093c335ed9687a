"""schedcmp: which diffusers scheduler should I use for this model and prompt?"""

__version__ = "0.1.0"
