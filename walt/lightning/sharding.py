"""Sharded data parallelism (FSDP2) for ``WALTModule``: shard the backbone block by block.

Lightning's ``FSDPStrategy`` (FSDP1) needs a GPU; its FSDP2 route, ``ModelParallelStrategy``,
runs on GPUs (NCCL) and CPUs (gloo) alike and leaves the wrapping to the LightningModule's
``configure_model``, which calls :func:`shard_module`. Each block of the backbone (each
``WindowBlock`` of the DiT, each level of a U-Net) becomes one FSDP2 unit: its parameters are
gathered just before its forward and freed after it, so a rank holds the full weights of one block
at a time (ZeRO-3, Rajbhandari et al. 2020). Activation checkpointing (Chen et al. 2016) wraps the
same blocks, so only block inputs are kept between forward and backward.

The EMA copy is sharded the same way (same units, same mesh), so its parameters are DTensors
with exactly the placements of the trained ones and the EMA update stays a local, shard-by-shard
lerp with no communication. See docs/scaling.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor


class FSDP2Strategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` as pure sharded data parallelism over every process.

    Lightning's default splits a node's processes into a tensor-parallel group; the project uses no
    tensor parallelism, so every process is one data-parallel rank (its own data, a shard of every
    weight) and the mesh is ``(world_size, 1)``.

    Args:
        activation_checkpointing: recompute each block's activations in the backward pass.
        reshard_after_forward: free each block's gathered weights after its forward (ZeRO-3);
            ``False`` keeps them until the backward (ZeRO-2 memory, one all-gather fewer).
        save_distributed_checkpoint: each rank writes its shard into a checkpoint folder
            (``walt.export`` reads it); ``False`` gathers one full file on rank 0.
        process_group_backend: ``"nccl"`` / ``"gloo"``; by default from the accelerator.
    """

    def __init__(
        self,
        *,
        activation_checkpointing: bool = True,
        reshard_after_forward: bool = True,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
        )
        self.activation_checkpointing = activation_checkpointing
        self.reshard_after_forward = reshard_after_forward

    def setup_environment(self) -> None:
        # Known here (set by the accelerator connector) before the parent builds the mesh.
        if self._data_parallel_size == "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def block_lists(backbone: nn.Module) -> list[nn.ModuleList]:
    """The lists of blocks to shard one by one: the DiT's ``blocks``; a U-Net's residual blocks
    and attentions of every level plus its middle blocks (its levels are not called as modules,
    so their blocks are the units). Raises for a backbone with neither."""
    if isinstance(getattr(backbone, "blocks", None), nn.ModuleList):
        return [backbone.blocks]
    levels = [*getattr(backbone, "downs", ()), *getattr(backbone, "ups", ())]
    if levels and isinstance(getattr(backbone, "mid", None), nn.ModuleList):
        return [backbone.mid, *(lv.blocks for lv in levels), *(lv.attns for lv in levels)]
    raise TypeError(
        f"cannot shard {type(backbone).__name__}: it has no 'blocks' list (DiT) nor "
        "'downs' / 'mid' / 'ups' levels (U-Net)"
    )


def shard_backbone(
    backbone: nn.Module,
    *,
    mesh: DeviceMesh,
    activation_checkpointing: bool,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """Shard ``backbone`` in place: one FSDP2 unit per block, then the rest at the root.

    Activation checkpointing wraps each DiT block in torch's checkpoint wrapper (and turns the
    DiT's own ``grad_checkpointing`` off); a U-Net, which dispatches on its blocks' types, gets
    its own per-block ``grad_checkpointing`` on instead. ``False`` leaves the model's switch as
    configured.

    Args:
        backbone: a DiT or U-Net (blocks found by :func:`block_lists`).
        mesh: the 1-D data-parallel device mesh to shard over.
        activation_checkpointing: recompute each block in the backward pass.
        reshard_after_forward: see :class:`FSDP2Strategy`.
    """
    wrap = activation_checkpointing and isinstance(getattr(backbone, "blocks", None), nn.ModuleList)
    if activation_checkpointing:
        # The wrapper replaces the DiT's own switch (both would recompute every block twice).
        backbone.grad_checkpointing = not wrap
    for blocks in block_lists(backbone):
        for i, block in enumerate(blocks):
            if not any(True for _ in block.parameters()):
                continue  # nothing to shard (e.g. the identity where a level has no attention)
            if wrap:
                # The wrapper's state-dict hooks strip its prefix: keys stay those of the block.
                block = blocks[i] = checkpoint_wrapper(block)
            fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    # The root unit holds the embeddings, AdaLN, the resampling layers and the output head.
    fully_shard(backbone, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return backbone


def shard_module(module: Any, strategy: Any) -> None:
    """``WALTModule.configure_model``: shard the backbone and its EMA copy under FSDP2.

    A no-op under other strategies and when already sharded (``configure_model`` runs again for
    each ``trainer`` entry point). The EMA copy gets the same units with no checkpointing (it
    never runs a backward) and the same mesh, so the parameters pair up shard for shard.
    """
    if not isinstance(strategy, ModelParallelStrategy) or isinstance(module.backbone, FSDPModule):
        return
    mesh = module.device_mesh["data_parallel"]
    checkpointing = getattr(strategy, "activation_checkpointing", True)
    reshard = getattr(strategy, "reshard_after_forward", True)
    shard_backbone(
        module.backbone, mesh=mesh, activation_checkpointing=checkpointing,
        reshard_after_forward=reshard,
    )
    shard_backbone(
        module.ema.module, mesh=mesh, activation_checkpointing=False, reshard_after_forward=reshard
    )


def full(t: Tensor) -> Tensor:
    """The whole value of a DTensor (a collective: every rank must call it); others as they are."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def is_sharded_state(state: Mapping[str, Any]) -> bool:
    """True for a sharded (distributed-checkpoint) state dict: one that holds DTensors."""
    return any(isinstance(v, DTensor) for v in state.values())


def grad_total_norm(params: list[nn.Parameter]) -> Tensor | None:
    """The 2-norm of all gradients together (over every shard), or None without gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return full(torch.nn.utils.get_total_norm(grads, norm_type=2.0))
