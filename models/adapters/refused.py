"""Model types molink cannot serve, each with the reason a peer gives when asked to (docs/models.md lists them).

Types transformers can run as causal language models but that do not fit a swarm of spans: encoder and
encoder-decoder models, multimodal wrappers (whose text models are served where transformers has them),
and families whose layers need more than one hidden state from the layer before, or keep their state
outside a per-session cache.
"""

from __future__ import annotations

from models.adapters.base import refuse

_ENCODER = ("an encoder (BERT-style, bidirectional) model or the decoder of an encoder-decoder model: molink "
            "serves decoder-only language models")
_MULTIMODAL = "a multimodal model (image, audio or video inputs): serve its text model, {}, from a text-only checkpoint"
_MULTIMODAL_ONLY = "a multimodal or speech model whose language layers are not a separate text model in transformers"

refuse({
    **{t: _ENCODER for t in (
        "bart", "bert", "bert-generation", "big_bird", "bigbird_pegasus", "blenderbot", "blenderbot-small",
        "camembert", "data2vec-text", "electra", "ernie", "marian", "mbart", "megatron-bert", "mvp", "pegasus",
        "plbart", "prophetnet", "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "trocr",
        "whisper", "xlm", "xlm-roberta", "xlm-roberta-xl", "xmod",
    )},
    "gemma3": _MULTIMODAL.format("gemma3_text"),
    "gemma4": _MULTIMODAL.format("gemma4_text"),
    "llama4": _MULTIMODAL.format("llama4_text"),
    "qwen3_5": _MULTIMODAL.format("qwen3_5_text"),
    "qwen3_5_moe": _MULTIMODAL.format("qwen3_5_moe_text"),
    **{t: _MULTIMODAL_ONLY for t in (
        "emu3", "fuyu", "git", "got_ocr2", "mllama", "moshi", "moss_transcribe_diarize", "musicgen",
        "musicgen_melody", "phi4_multimodal",
    )},
    "gemma3n": "a multimodal model whose text model (gemma3n_text) cannot be served either: see gemma3n_text",
    "gemma3n_text": "its layers carry several parallel hidden states (AltUp) and take per-layer inputs computed from "
                    "the token ids, and its last layers read earlier layers' keys and values: a span receives one "
                    "hidden state and nothing else",
    "zamba": "its shared attention blocks take the original token embeddings as a second input at every hybrid "
             "layer, and their weights are tied across layers: a span receives only the current hidden state",
    "zamba2": "its shared attention blocks take the original token embeddings as a second input at every hybrid "
              "layer, and their weights are tied across layers: a span receives only the current hidden state",
    "recurrent_gemma": "its recurrent blocks keep their state inside the model's modules (set up per batch), not in "
                       "a per-session cache, so one peer cannot hold many sessions",
    "rwkv": "its recurrent state is passed as a separate tensor, not kept in transformers' per-layer cache that spans "
            "hold per session",
    "longcat_flash": "each decoder layer holds two attention sublayers (num_hidden_layers counts sublayers, twice "
                     "the decoder layers), which spans and caches cannot yet number apart",
    "hrm_text": "a hierarchical recurrent model that loops over its two layer stacks several times per token: there is "
                "no single pass through the layers to cut into spans",
    "reformer": "LSH and local attention with chunked, reversible layers and no per-layer key/value cache",
    "xlnet": "a permutation language model whose memory is not a per-layer key/value cache",
})
