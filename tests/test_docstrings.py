"""Every runnable example in the public modules' docstrings runs and shows what it says."""

import doctest
import importlib

import pytest

MODULES = [
    "align_gym", "align_gym.wrappers.core", "align_gym.wrappers.potential", "align_gym.wrappers.vector",
    "align_gym.wrappers.sb3", "align_gym.wrappers.intrinsic", "align_gym.agents.session", "align_gym.agents.trl_env",
    "align_gym.agents.openenv_server", "align_gym.wrappers.count", "align_gym.wrappers.placebo", "align_gym.wrappers.registry", "align_gym.wrappers.episodic", "align_gym.agents.sb3", "align_gym.envs.keydoor",
    "align_gym.envs.mountaincar", "align_gym.envs.pointmaze", "align_gym.envs.deepsea", "align_gym.envs.minihack",
    "align_gym.wrappers.nets", "align_gym.wrappers.text", "align_gym.wrappers.toolrl", "align_gym.envs.text.core", "align_gym.envs.text.textquest", "align_gym.envs.text.textworld",
    "align_gym.choice", "align_gym.envs.tools.calls", "align_gym.envs.tools.core", "align_gym.envs.tools.toolcalc", "align_gym.envs.tools.toolsql",
    "align_gym.envs.web.pages", "align_gym.envs.web.catalogue", "align_gym.envs.web.webshop", "align_gym.envs.web.webform", "align_gym.envs.web.server",
    "align_gym.llm_rewards.annotator", "align_gym.llm_rewards.labeller", "align_gym.llm_rewards.judge_check", "align_gym.llm_rewards.cache", "align_gym.llm_rewards.parsing",
    "align_gym.llm_rewards.prompts", "align_gym.llm_rewards.sandbox", "align_gym.llm_rewards.codegen",
    "align_gym.llm_rewards.reward_code", "align_gym.llm_rewards.reward_search",
    "align_gym.wrappers.tokens", "align_gym.wrappers.credit", "align_gym.wrappers.ircr", "align_gym.wrappers.rrd",
    "align_gym.agents.credit", "align_gym.envs.pendulum", "align_gym.llm_rewards.lare", "align_gym.llm_rewards.calm",
    "align_gym.agents.llm_policy", "align_gym.agents.token_ppo", "align_gym.agents.llm_checkpoint", "align_gym.progress", "align_gym.hyperparams",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
