"""Pictures as PNG bytes, drawn off-screen (jobs and flows have no display)."""

from __future__ import annotations

import io


def new_figure(size: tuple[float, float], **layout):
    """``(figure, axes)`` of ``plt.subplots`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, **layout)


def png(figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()
