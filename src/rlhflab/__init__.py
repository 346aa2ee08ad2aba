"""rlhflab: align language models from feedback, with and without RL, and measure what breaks."""

__version__ = "0.1.0"
