"""Rule steps of the figures: heatmap (scpert.plots)."""

from __future__ import annotations

import pandas as pd

from scpert import runtime


def heatmap(summary_path, pdf_path, png_path, protocol: str) -> None:
    """Rule heatmap: methods x metrics of one protocol's summary, PDF + PNG."""
    import matplotlib.pyplot as plt

    from scpert.plots.heatmap import heatmap as draw

    fig = draw(pd.read_csv(summary_path, sep="\t"), protocol)
    runtime.write_atomic(
        pdf_path, lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None})
    )
    runtime.write_atomic(png_path, lambda p: fig.savefig(p, format="png", dpi=150))
    plt.close(fig)
