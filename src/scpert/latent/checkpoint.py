"""The published SCimilarity model-folder layout, read and written.

A model folder (e.g. SCimilarity v1.1, Zenodo 10685499) holds:

- ``encoder.ckpt`` / ``decoder.ckpt``: ``torch.save({"state_dict": module.state_dict()})``;
- ``layer_sizes.json``: ``{state-dict key: shape}`` of the ENCODER; the Linear weights (keys with
  ``weight`` and a 2-D shape, in layer order) give ``hidden_dim`` = their output sizes but the last,
  ``latent_dim`` = the last one's output size and ``n_genes`` = the first one's input size. The
  decoder mirrors the encoder (SCimilarity builds it from the reversed hidden sizes);
- ``gene_order.tsv``: the input genes, one symbol per line, no header.

SCimilarity sorts the keys as strings, which misorders networks of ten or more layers; here they
are sorted by their numeric indices. The folders :func:`save_model` writes (the output of rule
``finetune_latent``) use the same layout, with ``gene_order.tsv`` = the split's genes, plus
``latent.json`` (how the model was made).

:func:`adapt_to_genes` moves a model to another gene space without changing what it computes: the
encoder's first Linear keeps the weight columns of the genes present in the model's gene order and
gets zero columns for the others, which is exactly SCimilarity's ``align_dataset`` (genes outside
the order dropped, missing ones zero-filled) folded into the weights; the decoder's reconstruction
layer keeps the matching rows (zero rows for genes it never reconstructed). So the adapted encoder
on the new genes' expression equals the original encoder on the zero-filled aligned expression.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from scpert.errors import InputError
from scpert.latent.model import LatentModel

ENCODER_FILE = "encoder.ckpt"
DECODER_FILE = "decoder.ckpt"
LAYER_SIZES_FILE = "layer_sizes.json"
GENE_ORDER_FILE = "gene_order.tsv"
META_FILE = "latent.json"
LAYOUT = (ENCODER_FILE, DECODER_FILE, LAYER_SIZES_FILE, GENE_ORDER_FILE)


class CheckpointError(InputError):
    """A model folder does not follow the SCimilarity layout; the message names file and field."""


def read_gene_order(path: str | Path) -> list[str]:
    genes = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not genes:
        raise CheckpointError(f"{path}: no genes (expected one symbol per line)")
    if len(set(genes)) != len(genes):
        raise CheckpointError(f"{path}: gene symbols are not unique")
    return genes


def _layer_index(key: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", key))


def architecture(layer_sizes: dict[str, list[int]], source: str | Path) -> dict[str, Any]:
    """``n_genes``, ``hidden_dim`` and ``latent_dim`` from an encoder's ``layer_sizes.json``."""
    linear = sorted(
        (key for key, shape in layer_sizes.items() if "weight" in key and len(shape) == 2),
        key=_layer_index,
    )
    if len(linear) < 2:
        raise CheckpointError(
            f"{source}: expected >= 2 Linear weights ('network.<i>...weight' with 2-D shapes), "
            f"found {linear}"
        )
    shapes = [layer_sizes[key] for key in linear]
    return {
        "n_genes": shapes[0][1],
        "hidden_dim": [s[0] for s in shapes[:-1]],
        "latent_dim": shapes[-1][0],
    }


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file is missing (SCimilarity layout: {', '.join(LAYOUT)})")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: expected a dict with key 'state_dict'")
    return ckpt["state_dict"]


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> LatentModel:
    """A :class:`LatentModel` from a folder in the SCimilarity layout (evaluation mode)."""
    folder = Path(folder)
    sizes_path = folder / LAYER_SIZES_FILE
    if not sizes_path.is_file():
        raise CheckpointError(
            f"{sizes_path}: file is missing (SCimilarity layout: {', '.join(LAYOUT)})"
        )
    arch = architecture(json.loads(sizes_path.read_text()), sizes_path)
    genes = read_gene_order(folder / GENE_ORDER_FILE)
    if len(genes) != arch["n_genes"]:
        raise CheckpointError(
            f"{folder / GENE_ORDER_FILE}: {len(genes)} genes, but the encoder's input layer in "
            f"{sizes_path} has {arch['n_genes']}"
        )
    model = LatentModel(genes, arch["latent_dim"], arch["hidden_dim"])
    for name, net in (("encoder", model.encoder), ("decoder", model.decoder)):
        path = folder / (ENCODER_FILE if name == "encoder" else DECODER_FILE)
        try:
            net.load_state_dict(_state_dict(path))
        except RuntimeError as err:
            raise CheckpointError(
                f"{path}: state_dict does not fit the {name} described by "
                f"{sizes_path}: {str(err).splitlines()[0]}"
            ) from None
    return model.to(device).eval()


def save_model(model: LatentModel, folder: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``model`` in the SCimilarity layout (+ ``latent.json`` with ``meta``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder_state = {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()}
    torch.save({"state_dict": encoder_state}, folder / ENCODER_FILE)
    torch.save(
        {"state_dict": {k: v.detach().cpu() for k, v in model.decoder.state_dict().items()}},
        folder / DECODER_FILE,
    )
    sizes = {key: list(value.shape) for key, value in encoder_state.items()}
    (folder / LAYER_SIZES_FILE).write_text(json.dumps(sizes))
    (folder / GENE_ORDER_FILE).write_text("\n".join(model.genes) + "\n")
    (folder / META_FILE).write_text(json.dumps(meta or {}, indent=1))


@torch.no_grad()
def adapt_to_genes(model: LatentModel, genes: list[str]) -> LatentModel:
    """A copy of ``model`` over ``genes`` (see module docstring); other layers are copied as is."""
    position = {g: i for i, g in enumerate(model.genes)}
    index = torch.tensor([position.get(str(g), -1) for g in genes])
    present = index >= 0
    adapted = LatentModel(genes, model.latent_dim, model.hidden_dim)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    enc_in = "encoder.network.0.1.weight"
    dec_out = f"decoder.network.{len(model.hidden_dim)}.weight"  # the reconstruction layer
    dec_bias = f"decoder.network.{len(model.hidden_dim)}.bias"
    w_in = torch.zeros(state[enc_in].shape[0], len(genes))
    w_in[:, present] = state[enc_in][:, index[present]]
    w_out = torch.zeros(len(genes), state[dec_out].shape[1])
    w_out[present] = state[dec_out][index[present]]
    b_out = torch.zeros(len(genes))
    b_out[present] = state[dec_bias][index[present]]
    state.update({enc_in: w_in, dec_out: w_out, dec_bias: b_out})
    adapted.load_state_dict(state)
    return adapted.to(model.device).train(model.training)


def load_frozen_prior(priors: dict, genes: list[str], method: str, device) -> LatentModel:
    """A method's ``latent`` prior (rule finetune_latent) in evaluation mode with its parameters
    frozen, checked against the method's genes (scPPDM and StateXDiff read it this way)."""
    from scpert.data.schema import SchemaError

    if "latent" not in priors:
        raise SchemaError(f"{method}: prior 'latent' (rule finetune_latent) was not provided")
    latent = load_model(priors["latent"], device)
    if latent.genes != genes:
        raise SchemaError(
            f"{priors['latent']}/gene_order.tsv: genes differ from the split's genes "
            f"({len(latent.genes)} vs {len(genes)})"
        )
    for q in latent.parameters():
        q.requires_grad_(False)
    return latent.eval()
