"""Command-line arguments that more than one sub-command takes (the `sweep` parser lives with the sweeps)."""
from __future__ import annotations

import argparse

__all__ = ["add_epochs_argument", "epochs_arg"]


def epochs_arg(text: str) -> int:
    """argparse type: a whole number of epochs, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} epochs: training needs at least 1")
    return value


def add_epochs_argument(p: argparse.ArgumentParser) -> None:
    """--epochs for prune and sweep: which checkpoint of --model (`train --epochs` makes others)."""
    p.add_argument("--epochs", type=epochs_arg, help="use --model's checkpoint trained for this many epochs (default: "
                   "the model's own count; one that is missing is trained first, as `train --epochs` does)")
