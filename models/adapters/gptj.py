"""GPT-J and CodeGen: keys ``transformer.{wte,h.{i},ln_f}`` and an LM head with a bias.

Both put rotary position embedding on the first ``rotary_dim`` dimensions of each head (rotate-every-two),
from a sinusoid table the base model holds (``rotary_emb``, rebuilt like every family's rotary module), and run
attention and MLP in parallel from one LayerNorm. No position table is added before layer 0, so the client's
embedding is a plain lookup in ``wte``. CodeGen's attention projects q, k and v with one fused ``qkv_proj``,
which the checkpoint stores as such.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

for model_type, base in (("gptj", "GPTJModel"), ("codegen", "CodeGenModel")):
    register(
        Adapter(
            model_types=(model_type,),
            build_base=base_class(base),
            base_prefix="transformer.",
            embed_attr="wte",
            norm_attr="ln_f",
            layers_attr="h",
            head_bias_key="lm_head.bias",
            notes="keys transformer.wte / h.{i} / ln_f, LM head with a bias; rotary on rotary_dim, parallel "
                  "attention and MLP in layers",
        )
    )
