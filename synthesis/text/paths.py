"""Where the frontend finds data that is not part of the repository (read once, here)."""

from __future__ import annotations

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
#: The repository's include/ folder (templates, catalogue, lexicons).
INCLUDE_DIR = REPO_ROOT / "include"
EVAL_DIR_ENV = "VOICE_NOTIFY_EVAL_DIR"
TOKENS_DIR_ENV = "VOICE_NOTIFY_COSYVOICE3_TOKENS"


def eval_dir() -> pathlib.Path:
    """Evaluation data: ``$VOICE_NOTIFY_EVAL_DIR``, else ``shared/eval`` next to the repo."""
    configured = os.environ.get(EVAL_DIR_ENV)
    return pathlib.Path(configured) if configured else REPO_ROOT.parent / "shared" / "eval"


def cosyvoice3_tokens_dir() -> pathlib.Path:
    """CosyVoice3 token inventories (``pinyin_tokens.txt``, ``cmu_tokens.txt``).

    ``$VOICE_NOTIFY_COSYVOICE3_TOKENS`` if set (the GPU image points it at the model's
    files), else ``cosyvoice3/`` in the evaluation data folder.
    """
    configured = os.environ.get(TOKENS_DIR_ENV)
    return pathlib.Path(configured) if configured else eval_dir() / "cosyvoice3"
