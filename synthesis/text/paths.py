"""Where the frontend finds data that is not part of the repository (read once, here)."""

from __future__ import annotations

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
#: The include/ folder (templates, catalogue, lexicons, token inventory):
#: ``$VOICE_NOTIFY_INCLUDE_DIR`` (an installed package has no repository beside it; the
#: images set it), else the repository's.
INCLUDE_DIR = pathlib.Path(os.environ.get("VOICE_NOTIFY_INCLUDE_DIR") or REPO_ROOT / "include")
EVAL_DIR_ENV = "VOICE_NOTIFY_EVAL_DIR"
TOKENS_DIR_ENV = "VOICE_NOTIFY_COSYVOICE3_TOKENS"


def eval_dir() -> pathlib.Path:
    """Evaluation data: ``$VOICE_NOTIFY_EVAL_DIR``, else ``tests/data/eval`` in the repository."""
    configured = os.environ.get(EVAL_DIR_ENV)
    return pathlib.Path(configured) if configured else REPO_ROOT / "tests" / "data" / "eval"


def cosyvoice3_tokens_dir() -> pathlib.Path:
    """CosyVoice3 token inventories (``pinyin_tokens.txt``, ``cmu_tokens.txt``).

    ``$VOICE_NOTIFY_COSYVOICE3_TOKENS`` if set (the GPU image may point it at the
    model's files), else ``include/cosyvoice3/tokens`` (copied in with its source and
    licence: the plan step needs it at run time).
    """
    configured = os.environ.get(TOKENS_DIR_ENV)
    return pathlib.Path(configured) if configured else INCLUDE_DIR / "cosyvoice3" / "tokens"
