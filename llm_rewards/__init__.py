"""LLM-derived rewards: clients, the on-disk cache, the annotator, parsers, prompt templates and
the sandbox for LLM-written code. Methods (Motif, ONI, ELLM, Eureka, ...) build on these.

>>> from align_gym.llm_rewards import get_client  # doctest: +SKIP
>>> client = get_client("hf:default")  # the embedded model, cached on disk  # doctest: +SKIP
"""

from .annotator import Annotator
from .cache import CacheMiss, LLMCache, cache_key
from .clients import LLMClient, get_client, mean_logprob, parse_client_spec, total_logprob
from .labeller import ProcessLabeller
from .parsing import ParseError, ParseOutcome, ParseStats, parse_with_repair
from .prompts import PromptTemplate, list_templates, load_template
from .reward_code import LLMPotential

__all__ = ["Annotator", "CacheMiss", "LLMCache", "LLMClient", "LLMPotential", "ParseError", "ParseOutcome", "ParseStats",
           "ProcessLabeller", "PromptTemplate", "cache_key", "get_client", "list_templates", "load_template", "mean_logprob",
           "parse_client_spec", "parse_with_repair", "total_logprob"]
