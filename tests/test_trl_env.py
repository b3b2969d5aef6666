"""The TRL door: TRL's real GRPOTrainer trains through `trl_environment` on a tiny model on CPU."""

import inspect
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("trl")
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers.utils import get_json_schema  # noqa: E402

from align_gym.agents import trl_environment  # noqa: E402
from align_gym.agents.models import embedded_tokenizer, tiny_causal_lm, tool_calling_tokenizer  # noqa: E402
from align_gym.agents.session import EnvSession, text_env_ids  # noqa: E402

SHAPING = "pbrs(potential=reference)"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def tokenizer():
    return tool_calling_tokenizer(embedded_tokenizer())


def tool_schemas(env) -> list[dict]:
    return [get_json_schema(getattr(env, name)) for name in env.tool_names]


def call(name: str, arguments: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                                "function": {"name": name, "arguments": arguments}}]}


def model_that_solves(tokenizer, Env, seed: int):
    """A tiny random model trained for a few seconds to make the two tool calls that solve one
    problem: so the trainer's rollouts really step the env (a random model never calls a tool)."""
    env = Env()
    observation = env.reset(seed=seed)
    expression = env.session.env.unwrapped.state_dict()["reference_call"].split('"expression": "')[1].split('"')[0]
    result = env.calculator(expression=expression)
    answer = env.session.env.unwrapped.answer
    messages = [{"role": "user", "content": observation}, call("calculator", {"expression": expression}),
                {"role": "tool", "name": "calculator", "content": result}, call("answer", {"value": answer})]
    tools = tool_schemas(env)

    def length(turns: int, prompt: bool) -> int:
        return len(tokenizer.apply_chat_template(messages[:turns], tools=tools, add_generation_prompt=prompt,
                                                 return_dict=True)["input_ids"])

    ids = torch.tensor(tokenizer.apply_chat_template(messages, tools=tools, return_dict=True)["input_ids"])
    # Learn the assistant's tokens only, and apply the output layer to those alone (7x cheaper).
    targets = torch.cat([torch.arange(length(1, True), length(2, False)), torch.arange(length(3, True), len(ids))])
    model = tiny_causal_lm(tokenizer, seed=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        hidden = model.model(input_ids=ids[None]).last_hidden_state[0]
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[targets - 1]), ids[targets])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if loss.item() < 0.005:
            break
    return model


def test_grpo_trains_through_the_factory_and_logs_task_reward_plus_terms(tokenizer, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    Env = trl_environment("Align/ToolCalc-v0", shaping=SHAPING, steps=1)
    seed = 1234
    model = model_that_solves(tokenizer, Env, seed)
    scored = []  # each rollout as TRL scored it: a weight-0 reward function records the envs

    def record(environments, **_):
        scored.append([env.record for env in environments])
        return [0.0] * len(environments)

    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=256, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                      seed=0, reward_weights=[1.0, 0.0], bf16=False, temperature=0.7)
    rows = Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]] * 2, "seed": [seed, seed]})
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=rows, environment_factory=Env,
                          reward_funcs=[*Env.reward_funcs, record])
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logs) == len(scored) == 2
    stepped = 0
    for log, records in zip(logs, scored):
        task = [r["env_return"] for r in records]
        terms = [r["term_returns"]["pbrs"] for r in records]
        assert log["rewards/ToolCalc_v0/mean"] == pytest.approx(sum(task) / len(task), abs=1e-6)
        assert log["rewards/pbrs/mean"] == pytest.approx(sum(terms) / len(terms), abs=1e-6)
        assert log["reward"] == pytest.approx(sum(t + f for t, f in zip(task, terms)) / len(task), abs=1e-6)
        for r in records:
            # Replay each rollout's actions in a fresh env: its own task reward and terms are what TRL got.
            session = EnvSession("Align/ToolCalc-v0", SHAPING, steps=1)
            session.reset(r["seed"])
            for action in r["actions"]:
                session.step(action)
            assert session.env_return == pytest.approx(r["env_return"])
            # What TRL got per term: the steps' terms plus what the rollout's end paid.
            assert {name: value + r["end_terms"][name] for name, value in session.term_returns.items()} \
                == pytest.approx(r["term_returns"])
            assert r["seed"] == seed
            stepped += bool(r["actions"])
    assert stepped > 0  # the rollouts really called the env's tools
    assert any(r["env_return"] == 1.0 for records in scored for r in records)  # and solved it at least once


@pytest.mark.parametrize("env_id", text_env_ids())
def test_every_text_and_tool_env_gets_typed_documented_tools(env_id):
    Env = trl_environment(env_id, shaping="count(key=state)")
    env = Env()
    assert isinstance(env.reset(seed=0), str)
    schemas = {schema["function"]["name"]: schema["function"] for schema in tool_schemas(env)}
    tools = getattr(env.session.env.unwrapped, "tools", None)
    assert set(schemas) == (set(tools) if tools else {"act"})
    # TRL's own rule: every public function of the class is a tool. Nothing else may be one.
    public = {name for name, _ in inspect.getmembers(Env, inspect.isfunction) if not name.startswith("_")}
    assert public - {"reset", "get_reward"} == set(schemas)
    for schema in schemas.values():
        assert schema["description"]
        for name, argument in schema["parameters"]["properties"].items():
            assert argument["description"] and argument["type"] in ("string", "number"), name
    assert [f.__name__ for f in Env.reward_funcs] == ["count"]


def test_bad_ids_specs_and_calls_get_clear_answers():
    with pytest.raises(ValueError, match="no text actions"):
        trl_environment("Align/KeyDoor-v0")
    with pytest.raises(ValueError, match="did you mean 'pbrs'"):
        trl_environment("Align/ToolCalc-v0", shaping="pbsr")
    with pytest.raises(ValueError, match="SB3 view"):
        trl_environment("Align/ToolCalc-Choice-v0")
    with pytest.raises(ValueError, match="rollout_end must be one of 'terminal', 'progress'"):
        trl_environment("Align/ToolCalc-v0", rollout_end="finished")
    env = trl_environment("Align/ToolCalc-v0")()
    assert env.calculator(expression="1 + 1") == "No episode has started."
    env.reset(seed=0)
    # A wrong argument reaches the env, which refuses it in words the model can read.
    assert "calculator takes expression" in env.calculator(expresion="1 + 1")
    assert "calculator cannot read" in env.calculator(expression="__import__('os')")
    assert env.record["env_return"] == 0.0 and len(env.record["actions"]) == 2
    env.answer(value=-1)
    assert env.record["done"] and env.record["success"] is False
    assert env.answer(value=0) == "The episode is over: further actions change nothing."
    assert env.record["actions"][-1] == '{"name": "answer", "arguments": {"value": -1}}'


def test_forgotten_shaping_terms_are_reported_once():
    Env = trl_environment("Align/TextQuest-easy-v0", shaping="count(key=state)")
    env = Env()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="reward_funcs="):
        env.get_reward()
    Env.reward_funcs[0](environments=[env])
    env.get_reward()  # read this time, and reported only once anyway


def test_rollouts_without_a_seed_draw_reproducible_episodes():
    def first_episodes(seed: int) -> list[str]:
        Env = trl_environment("Align/TextQuest-medium-v0", seed=seed)
        envs = [Env(), Env()]
        return [env.reset() for env in envs] + [env.reset() for env in envs]

    episodes = first_episodes(7)
    assert episodes == first_episodes(7)  # the same seed: the same episodes, instance by instance
    assert len(set(episodes)) == 4  # each instance, and each of its resets, a different episode
    assert episodes != first_episodes(8)


# -- potential-based terms on rollouts that stop before their episode ends ----------------------

def grpo_reward(Env, env) -> float:
    """What GRPO scores a rollout: every term's reward function, then the task reward (TRL's
    order; all weight 1)."""
    terms = sum(reward(environments=[env])[0] for reward in Env.reward_funcs)
    return terms + env.get_reward()


def first_product(Env, seed: int, matches: bool) -> str:
    """The id of the first product that the instruction's own search shows and that can (or
    cannot) score 1, found by opening each in a probe episode."""
    probe = Env()
    probe.reset(seed=seed)
    query = probe.session.env.unwrapped.goal.query
    results = probe.act(f"search[{query}]")
    for product in (line[1:-1] for line in results.splitlines() if line.startswith("[b0")):
        probe.reset(seed=seed)
        probe.act(f"search[{query}]")
        probe.act(f"click[{product}]")
        if probe.session.turns[-1].info["state"]["item_matches"] == matches:
            return product
    raise AssertionError(f"no product with item_matches={matches} on the first results page")


def test_an_unfinished_rollout_outranks_a_wrong_purchase_under_progress_only():
    seed, totals = 0, {}
    for rollout_end in ("default", "progress"):  # the default first: it must be "terminal"
        setting = {} if rollout_end == "default" else {"rollout_end": rollout_end}
        Env = trl_environment("Align/WebShop-v0", shaping=SHAPING, **setting)
        # One rollout opens the right product, chooses every option, and stops before buying.
        unfinished = Env()
        unfinished.reset(seed=seed)
        goal = unfinished.session.env.unwrapped.goal
        unfinished.act(f"search[{goal.query}]")
        unfinished.act(f"click[{first_product(Env, seed, matches=True)}]")
        for _, value in goal.options:
            unfinished.act(f"click[{value}]")
        # The other buys a product that cannot score 1: the episode ends with part of the score.
        bought = Env()
        bought.reset(seed=seed)
        bought.act(f"search[{goal.query}]")
        bought.act(f"click[{first_product(Env, seed, matches=False)}]")
        bought.act("click[Buy Now]")
        totals[rollout_end] = (grpo_reward(Env, unfinished), grpo_reward(Env, bought))
        assert not unfinished.record["done"] and unfinished.get_reward() == 0.0
        assert bought.record["done"] and 0.0 < bought.get_reward() < 1.0
        potential = unfinished.session.env.unwrapped.potentials["reference"]
        first, last = (unfinished.session.turns[i].info["state"] for i in (0, -1))
        if rollout_end == "progress":
            # Phi(s_last) is kept: the progress bonus, and the term says it is not invariant.
            assert totals[rollout_end][0] == pytest.approx(potential(last) - potential(first))
            assert Env.invariant == {"pbrs": False} and not Env.reward_funcs[0].invariant
        else:
            # The end counts as terminal: both rollouts get -Phi(s_0), and GRPO ranks by the task alone.
            assert totals[rollout_end] == pytest.approx((unfinished.get_reward() - potential(first),
                                                         bought.get_reward() - potential(first)))
            assert unfinished.record["end_terms"]["pbrs"] == pytest.approx(-potential(last))
            assert Env.rollout_end == "terminal" and Env.invariant == {"pbrs": True} and Env.reward_funcs[0].invariant
    assert totals["progress"][0] > totals["progress"][1]  # the 0.90 against 0.40
    assert totals["default"][0] < totals["default"][1]


@pytest.mark.parametrize("rollout_end", ["terminal", "progress"])
def test_potential_terms_pay_exactly_what_the_rollout_end_setting_says(rollout_end):
    # A potential that is not 0 at the start, scaled, beside a count bonus; episodes cut at 4 steps.
    shaping = "pbrs(potential=distance, scale=0.5)+count(key=state)"
    Env = trl_environment("Align/WebShop-v0", shaping=shaping, rollout_end=rollout_end, max_steps=4)
    assert Env.invariant == {"pbrs": rollout_end == "terminal", "count": False}
    plays = {"no step": [], "stopped": ["search"], "bought": ["search", "wrong", "click[Buy Now]"],
             "truncated": ["search", "click[Next >]", "click[< Prev]", "click[Next >]"]}
    seed, wrong = 0, first_product(Env, 0, matches=False)
    endings = set()
    for play in plays.values():
        env = Env()
        env.reset(seed=seed)
        query = env.session.env.unwrapped.goal.query
        for action in play:
            env.act({"search": f"search[{query}]", "wrong": f"click[{wrong}]"}.get(action, action))
        last = env.session.turns[-1]
        endings.add((last.terminated, last.truncated))
        phi = env.session.env.unwrapped.potentials["distance"]
        phi_first, phi_last = phi(env.session.turns[0].info["state"]), phi(last.info["state"])
        assert phi_first != 0.0
        paid = Env.reward_funcs[0](environments=[env])[0]
        if rollout_end == "terminal" or last.terminated:
            assert paid == pytest.approx(-0.5 * phi_first)  # the same for every rollout of the group
        else:
            assert paid == pytest.approx(0.5 * (phi_last - phi_first))
        # The count bonus is not potential-based: its end pays nothing under either setting.
        assert env.record["end_terms"]["count"] == 0.0
        assert Env.reward_funcs[1](environments=[env])[0] == pytest.approx(env.session.term_returns["count"])
    assert endings == {(False, False), (True, False), (False, True)}
    # Another discount: the steps' terms no longer telescope in GRPO's undiscounted sum.
    assert trl_environment("Align/WebShop-v0", shaping=SHAPING, gamma=0.9).invariant == {"pbrs": False}


def test_the_readme_trl_snippet_runs_as_written_on_a_cpu(tmp_path, monkeypatch):
    # The README's snippet, word for word but for the model ("tiny" for "embedded") and one step.
    section = README.read_text().split("**TRL**", 1)[1]
    snippet = re.search(r"```python\n(.+?)\n```", section, re.S).group(1)
    assert snippet.count("max_steps=100") == 1
    source = snippet.replace("max_steps=100", "max_steps=1").replace('load_model("embedded")', 'load_model("tiny")')
    monkeypatch.chdir(tmp_path)  # its output_dir is relative
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    namespace: dict = {}
    exec(compile(source, "README.md (TRL snippet)", "exec"), namespace)
    assert 'load_model("tiny")' in source  # the test ran the tiny model, not the embedded one
    trainer, Env = namespace["trainer"], namespace["Env"]
    assert trainer.state.global_step == 1 and trainer.args.use_cpu == (not torch.cuda.is_available())
    log = next(entry for entry in trainer.state.log_history if "reward" in entry)
    assert {f"rewards/{name}/mean" for name in [*Env.term_names, "ToolCalc_v0"]} <= set(log)
