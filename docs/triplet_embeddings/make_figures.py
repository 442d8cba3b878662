"""Save the embedding plots of the triplet_embeddings notebook as PNG files in this folder.

Runs the source notebook's own code cells in order, in normal mode (not grading), except that section 9's
comparison trains only batch-hard (the model section 10 projects) and the loss curves are skipped. Each
figure a cell draws is saved. Usage, from the repository root, with the MNIST test split in torchvision's
layout under $DLCV_DATA (``<root>/MNIST/raw/t10k-*``)::

    MPLBACKEND=Agg python docs/triplet_embeddings/make_figures.py [--only-2d]

``--only-2d`` stops after the 2-D embedding (section 10's first plot).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent
FIGURES = {"model_2d, _ = train_embedding": ["embedding_2d.png"],
           "embeddings_64 = embed(": ["embedding_64d_pca.png", "embedding_64d_tsne.png"]}


def main() -> None:
    nb = nbformat.read(ROOT / "assignments/source/triplet_embeddings/triplet_embeddings.ipynb", as_version=4)
    namespace: dict[str, object] = {"__name__": "__main__", "sys": sys}
    for cell in nb.cells:
        if cell.cell_type != "code" or "plot_loss_curves({" in cell.source:
            continue
        source = cell.source.replace('METHODS = ["softmax", "contrastive", "triplet", "batch_all", "batch_hard"]',
                                     'METHODS = [] if "--only-2d" in sys.argv else ["batch_hard"]')
        plt.close("all")
        exec(compile(source, "triplet_embeddings.ipynb", "exec"), namespace)  # noqa: S102 - our own notebook
        for marker, names in FIGURES.items():
            if marker in source:
                for number, name in zip(plt.get_fignums(), names):
                    plt.figure(number).savefig(OUT / name, dpi=110)
                    print("saved", OUT / name)
                if "--only-2d" in sys.argv and marker.startswith("model_2d"):
                    return


if __name__ == "__main__":
    main()
