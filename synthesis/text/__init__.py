"""Text frontend of voice-notify: CRM due notices -> normalized, annotated speech segments.

Torch-free: imported by Airflow tasks. Entry point: :class:`NoticeComposer`.
"""

from __future__ import annotations

from synthesis.text.composer import NoticeComposer
from synthesis.text.errors import REASON_CODES, NoticeTextError
from synthesis.text.ir import ComposedNotice, Segment
from synthesis.text.render.cosyvoice3 import TokenInventory, render_cosyvoice3
from synthesis.text.render.espeak import render_espeak
from synthesis.text.render.ssml import render_ssml

__all__ = [
    "REASON_CODES",
    "ComposedNotice",
    "NoticeComposer",
    "NoticeTextError",
    "Segment",
    "TokenInventory",
    "render_cosyvoice3",
    "render_espeak",
    "render_ssml",
]
