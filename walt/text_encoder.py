"""Frozen text encoder (T5-style) for text-to-video, loaded from a local folder only.

W.A.L.T conditions on T5-XL token embeddings. Any Hugging Face encoder saved with
``save_pretrained`` (model + tokenizer in one folder) works; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn


class TextEncoder(nn.Module):
    """Captions -> (token embeddings (B, L, E), padding mask (B, L)).

    Args:
        path: local folder holding the encoder weights and its tokenizer.
        max_length: captions are padded or truncated to this many tokens (L).
    """

    def __init__(self, path: str | Path, *, max_length: int = 77) -> None:
        super().__init__()
        from transformers import AutoTokenizer, T5EncoderModel  # optional: the `text` extra

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"text encoder folder {str(path)!r} does not exist; save one with "
                "`save_pretrained` (weights are never downloaded at run time)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        self.model.eval().requires_grad_(False)
        self.max_length = max_length

    @property
    def dim(self) -> int:
        """E, the embedding width."""
        return self.model.config.d_model

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        tokens = self.tokenizer(
            list(captions),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(next(self.model.parameters()).device)
        emb = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        mask = tokens.attention_mask.bool()
        # An empty caption means "no text": its mask is all False, which the module treats as
        # the learned null text.
        empty = torch.tensor([not c.strip() for c in captions], device=mask.device)
        mask[empty] = False
        return emb.last_hidden_state, mask
