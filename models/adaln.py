"""Adaptive LayerNorm modulation: AdaLN-LoRA (W.A.L.T eq. 3) and classic per-block AdaLN.

Each block needs ``A_i = concat(gamma1, gamma2, beta1, beta2, alpha1, alpha2)`` in ``(B, 6D)``:
``gamma``/``beta`` scale and shift the normalised inputs of attention (1) and MLP (2), ``alpha``
gates their outputs. With AdaLN-LoRA (Gupta et al. 2023, eq. 3) one shared MLP gives
``A_1 = MLP(c)`` and block ``i > 1`` adds a rank-``r`` update ``A_i = A_1 + W_b^i W_a^i c``,
saving ``~6 D^2`` parameters per block over classic AdaLN (DiT, Peebles & Xie 2023), where
every block has its own ``Linear(D, 6D)``. Here ``c`` is the summed conditioning vector after
SiLU (the shared MLP's input); all ``6D`` outputs start at zero, so every block starts as the
identity (DiT's adaLN-Zero).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

AdaLNKind = Literal["lora", "classic"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x * (1 + scale) + shift`` with ``x (B, ..., D)`` and ``shift, scale (B, D)``."""
    extra = (1,) * (x.ndim - 2)
    shape = (shift.shape[0], *extra, shift.shape[-1])
    return x * (1 + scale.reshape(shape)) + shift.reshape(shape)


def gate(x: Tensor, alpha: Tensor) -> Tensor:
    """``alpha * x`` with ``x (B, ..., D)`` and ``alpha (B, D)``."""
    return x * alpha.reshape(alpha.shape[0], *((1,) * (x.ndim - 2)), alpha.shape[-1])


class SharedAdaLN(nn.Module):
    """The shared ``A_1 = Linear(SiLU(c))`` of AdaLN-LoRA, zero-initialised."""

    def __init__(self, *, hidden_size: int) -> None:
        """Args:
        hidden_size: width ``D``; the output is ``6D``.
        """
        super().__init__()
        self.linear = nn.Linear(hidden_size, 6 * hidden_size)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c_act: Tensor) -> Tensor:
        """``c_act`` = SiLU(c), ``(B, D)`` -> ``(B, 6D)``."""
        return self.linear(c_act)


class BlockAdaLN(nn.Module):
    """Per-block modulation: LoRA update of the shared ``A_1``, or a classic full projection."""

    def __init__(
        self, *, hidden_size: int, kind: AdaLNKind, rank: int = 2, use_lora: bool = True
    ) -> None:
        """Args:
        hidden_size: width ``D``.
        kind: ``"lora"`` (W.A.L.T eq. 3) or ``"classic"`` (own ``Linear(D, 6D)`` per block).
        rank: LoRA rank ``r`` (``"lora"`` only).
        use_lora: ``False`` for the first block under ``"lora"``, which uses ``A_1`` as is.
        """
        super().__init__()
        if kind not in ("lora", "classic"):
            raise ValueError(f"adaln must be 'lora' or 'classic', got {kind!r}")
        if kind == "lora" and rank < 1:
            raise ValueError(f"adaln_lora_rank must be >= 1, got {rank}")
        self.kind = kind
        self.down: nn.Linear | None = None
        self.up: nn.Linear | None = None
        self.full: nn.Linear | None = None
        if kind == "lora" and use_lora:
            self.down = nn.Linear(hidden_size, rank, bias=False)  # W_a: D -> r
            self.up = nn.Linear(rank, 6 * hidden_size, bias=False)  # W_b: r -> 6D
            nn.init.zeros_(self.up.weight)
        elif kind == "classic":
            self.full = nn.Linear(hidden_size, 6 * hidden_size)
            nn.init.zeros_(self.full.weight)
            nn.init.zeros_(self.full.bias)

    def forward(self, c_act: Tensor, shared: Tensor | None) -> tuple[Tensor, ...]:
        """Args:
        c_act: SiLU(c), ``(B, D)``.
        shared: ``A_1`` ``(B, 6D)`` under ``"lora"``; ignored under ``"classic"``.

        Returns:
            ``(gamma1, gamma2, beta1, beta2, alpha1, alpha2)``, each ``(B, D)``.
        """
        if self.full is not None:
            mod = self.full(c_act)
        else:
            if shared is None:
                raise ValueError("AdaLN-LoRA block called without the shared A_1")
            mod = shared
            if self.down is not None and self.up is not None:
                mod = mod + self.up(self.down(c_act))
        return tuple(mod.chunk(6, dim=-1))
