"""A peer's memory follows its span, not the model: 4 of 16 layers hold well under half of all 16."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

LAYERS = 16
LAYERS_PER_SHARD = 4


def write_sharded_checkpoint(root: Path) -> Path:
    """A random 16-layer Llama (hidden 1024, MLP 6144: ~1.5 GB in float32) in 4 shards with an index.

    Tensors are drawn directly (no model init) so the test spends its time on the peers, not on setup.
    """
    config = LlamaConfig(hidden_size=1024, intermediate_size=6144, num_hidden_layers=LAYERS, num_attention_heads=16,
                         num_key_value_heads=8, vocab_size=1000, max_position_embeddings=512)
    config.save_pretrained(root)
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in LlamaForCausalLM(config).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    for shard in range(LAYERS // LAYERS_PER_SHARD):
        layers = range(shard * LAYERS_PER_SHARD, (shard + 1) * LAYERS_PER_SHARD)
        names = [n for n in shapes if any(n.startswith(f"model.layers.{i}.") for i in layers)]
        if shard == 0:
            names += [n for n in shapes if not n.startswith("model.layers.")]
        fname = f"model-{shard + 1:05d}-of-{LAYERS // LAYERS_PER_SHARD:05d}.safetensors"
        tensors = {n: torch.randn(shapes[n], generator=gen) * 0.02 for n in names}
        save_file(tensors, root / fname, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, fname))
        del tensors
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sharded_checkpoint(tmp_path_factory.mktemp("big-llama"))


def peer_rss(swarm_of, path: Path, span: str) -> int:
    swarm = swarm_of(path, [span], extra=["--kv-reserve-tokens", "1024"])
    rss = psutil.Process(swarm.peers[0].pid).memory_info().rss
    swarm.stop()
    return rss


def test_peer_memory_follows_its_span(big_checkpoint, swarm_of):
    """Resident memory of a peer serving layers 4:8 is under half that of a peer serving all 16."""
    small = peer_rss(swarm_of, big_checkpoint, "4:8")
    full = peer_rss(swarm_of, big_checkpoint, "0:16")
    print(f"rss 4 layers {small / 2**20:.0f} MiB, 16 layers {full / 2**20:.0f} MiB, ratio {small / full:.2f}")
    assert small < 0.5 * full
