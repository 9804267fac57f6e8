"""The official training code's tensor names, for importing its checkpoints (``evapp import-checkpoint``).

Name tables, one per architecture: a regular expression over the official ``state_dict`` key and the evapp key
it becomes. The official names were read off the released models' ``state_dict()``
(ZhangHanN1/SGLFormer ``dvs128-gesture/sglformer.py`` at 4821b13, 171 tensors; xyshi2000/SpikingResformer
``models/spikingresformer.py`` ``spikingresformer_dvsg`` at 3f75127, 249 tensors); every key must match exactly
one rule, and the result must be exactly the evapp model's keys with the same shapes (``convert_state``).
"""

from __future__ import annotations

import re

import torch

# SGLFormer (dvs128-gesture): stem, four tokenizer convs, one stage of LocalBlock + 3 x (SSA, MLP), STB head.
SGLFORMER = (
    (r"stem\.conv\.conv3x3\.(.+)", r"stem.conv.\1"),
    (r"stem\.conv\.bn\.(.+)", r"stem.bn.\1"),
    (r"tokenizer\.conv([1-4])\.conv3x3\.(.+)", lambda m: f"tokenizer.{int(m[1]) - 1}.conv.{m[2]}"),
    (r"tokenizer\.conv([1-4])\.bn\.(.+)", lambda m: f"tokenizer.{int(m[1]) - 1}.bn.{m[2]}"),
    (r"blocks\.0\.loc\.conv\.conv3x3\.(.+)", r"local_block.dw.conv.\1"),
    (r"blocks\.0\.loc\.conv\.bn\.(.+)", r"local_block.dw.bn.\1"),
    (r"blocks\.0\.loc\.conv1x1_1\.conv1x1\.(.+)", r"local_block.pw1.conv.\1"),
    (r"blocks\.0\.loc\.conv1x1_1\.bn\.(.+)", r"local_block.pw1.bn.\1"),
    (r"blocks\.0\.loc\.dwconv3x3\.conv3x3\.(.+)", r"local_block.dw2.conv.\1"),
    (r"blocks\.0\.loc\.dwconv3x3\.bn\.(.+)", r"local_block.dw2.bn.\1"),
    (r"blocks\.0\.loc\.conv1x1_2\.conv1x1\.(.+)", r"local_block.pw2.conv.\1"),
    (r"blocks\.0\.loc\.conv1x1_2\.bn\.(.+)", r"local_block.pw2.bn.\1"),
    (r"blocks\.0\.ssa([1-3])\.(q|k|v|proj)_conv\.conv1x1\.(.+)", lambda m: f"ssa.{int(m[1]) - 1}.{m[2]}.conv.{m[3]}"),
    (r"blocks\.0\.ssa([1-3])\.(q|k|v|proj)_conv\.bn\.(.+)", lambda m: f"ssa.{int(m[1]) - 1}.{m[2]}.bn.{m[3]}"),
    (r"blocks\.0\.mlp([1-3])\.mlp([12])\.conv1x1\.(.+)", lambda m: f"mlp.{int(m[1]) - 1}.fc{m[2]}.conv.{m[3]}"),
    (r"blocks\.0\.mlp([1-3])\.mlp([12])\.bn\.(.+)", lambda m: f"mlp.{int(m[1]) - 1}.fc{m[2]}.bn.{m[3]}"),
    (r"full_size_conv\.(.+)", r"head.conv.\1"),
    (r"bn\.(.+)", r"head.bn.\1"),
    (r"head\.(weight|bias)", r"head.fc.\1"),
)

# SpikingResformer (spikingresformer_dvsg): prologue, stages of DSSA / GWFFN blocks with a downsample between.
SPIKINGRESFORMER = (
    (r"prologue\.0\.weight", "prologue.conv.weight"),
    (r"prologue\.1\.bn\.(.+)", r"prologue.bn.\1"),
    (r"layers\.(\d)\.(\d)\.(firing_rate_x|firing_rate_attn)", r"stages.\1.\2.\3"),
    (r"layers\.(\d)\.(\d)\.activation_(in|attn|out)\.w", r"stages.\1.\2.act_\3.w"),
    (r"layers\.(\d)\.(\d)\.W\.weight", r"stages.\1.\2.w.conv.weight"),
    (r"layers\.(0\.0|[12]\.[135])\.norm\.bn\.(.+)", r"stages.\1.w.bn.\2"),  # DSSA blocks
    (r"layers\.(\d)\.(\d)\.Wproj\.weight", r"stages.\1.\2.proj.conv.weight"),
    (r"layers\.(\d)\.(\d)\.norm_proj\.bn\.(.+)", r"stages.\1.\2.proj.bn.\3"),
    (r"layers\.(\d)\.(\d)\.up\.0\.w", r"stages.\1.\2.act1.w"),
    (r"layers\.(\d)\.(\d)\.up\.1\.weight", r"stages.\1.\2.up.conv.weight"),
    (r"layers\.(\d)\.(\d)\.up\.2\.bn\.(.+)", r"stages.\1.\2.up.bn.\3"),
    (r"layers\.(\d)\.(\d)\.conv\.0\.0\.w", r"stages.\1.\2.act2.w"),
    (r"layers\.(\d)\.(\d)\.conv\.0\.1\.weight", r"stages.\1.\2.conv.conv.weight"),
    (r"layers\.(\d)\.(\d)\.conv\.0\.2\.bn\.(.+)", r"stages.\1.\2.conv.bn.\3"),
    (r"layers\.(\d)\.(\d)\.down\.0\.w", r"stages.\1.\2.act3.w"),
    (r"layers\.(\d)\.(\d)\.down\.1\.weight", r"stages.\1.\2.down.conv.weight"),
    (r"layers\.(\d)\.(\d)\.down\.2\.bn\.(.+)", r"stages.\1.\2.down.bn.\3"),
    (r"layers\.([12])\.0\.conv\.weight", r"stages.\1.0.conv.conv.weight"),  # the downsample between stages
    (r"layers\.([12])\.0\.norm\.bn\.(.+)", r"stages.\1.0.conv.bn.\2"),
    (r"layers\.([12])\.0\.activation\.w", r"stages.\1.0.act.w"),
    (r"classifier\.weight", "fc.weight"),
)

NAME_TABLES = {"sglformer": SGLFORMER, "spikingresformer": SPIKINGRESFORMER}


class NameTableError(ValueError):
    """The checkpoint's tensors do not map onto the evapp model."""


def evapp_name(arch: str, official: str) -> str:
    """The evapp key of an official key (NameTableError when no rule, or more than one, matches)."""
    hits = []
    for pattern, target in NAME_TABLES[arch]:
        match = re.fullmatch(pattern, official)
        if match:
            hits.append(target(match) if callable(target) else match.expand(target))
    if len(hits) != 1:
        raise NameTableError(f"'{official}' is not a tensor of the official {arch} model"
                             if not hits else f"'{official}' matches {len(hits)} rules")
    return hits[0]


def convert_state(arch: str, official: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The official state renamed to ``model``'s keys; every tensor used once, shapes equal, none missing
    (evapp's own bookkeeping buffers, which the official model does not have, keep the model's value)."""
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in official.items():
        name = evapp_name(arch, key)
        if name in out:
            raise NameTableError(f"'{key}' and another tensor both map to '{name}'")
        if name not in ours:
            raise NameTableError(f"'{key}' maps to '{name}', which the evapp model does not have")
        if tuple(ours[name].shape) != tuple(tensor.shape):
            raise NameTableError(f"'{key}' has shape {tuple(tensor.shape)}, the evapp model's '{name}' "
                                 f"{tuple(ours[name].shape)}")
        out[name] = tensor.to(ours[name].dtype)
    missing = [k for k in ours if k not in out and not k.endswith(EVAPP_ONLY)]
    if missing:
        raise NameTableError(f"the checkpoint lacks {len(missing)} tensor(s) of the model (first: '{missing[0]}')")
    for key in ours:
        if key not in out:
            out[key] = ours[key].clone()
    return out


# Buffers only evapp's models have: DSSA's flag that its firing-rate buffers hold trained values (set on import).
EVAPP_ONLY = ("fr_initialized",)
