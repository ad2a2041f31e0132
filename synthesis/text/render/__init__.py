"""Engine renderers: one engine-neutral :class:`~synthesis.text.ir.Segment` -> engine input."""
