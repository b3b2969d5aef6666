"""Prompt templates as versioned TOML files (llm_rewards/prompts.py, llm_rewards/prompts/*.toml)."""

import doctest
import re
import textwrap

import pytest

from align_gym.llm_rewards import prompts
from align_gym.llm_rewards.cache import cache_key
from align_gym.llm_rewards.parsing import (
    ParseError,
    parse_bullets,
    parse_choice,
    parse_label,
    parse_number,
    parse_python_block,
)
from align_gym.llm_rewards.prompts import (
    PACKAGE_DIR,
    PROMPTS_ENV,
    PromptTemplate,
    TemplateError,
    list_templates,
    load_template,
)

SHIPPED = ["ellm_goals", "motif_pair", "oni_label", "rate_number", "repair", "reward_code", "web_progress"]
FIELDS = {
    "motif_pair": {"task": "Open the door.", "description_1": "You pick up the key.", "description_2": "You bump into a wall."},
    "oni_label": {"task": "Open the door.", "caption": "You pick up the key.",
                  "examples": 'Example 1: "You open the door." is extremely helpful and should be labelled as FOO.'},
    "ellm_goals": {"verbs": "pick up, open, go to", "state": "You see a key and a locked door. You hold nothing."},
    "rate_number": {"task": "Open the door.", "caption": "You pick up the key."},
    "reward_code": {"task": "Open the door.", "abstraction": "class State:\n    has_key: bool  # whether the agent holds the key",
                    "function": "potential(state: dict) -> float", "meaning": "Higher closer to the goal."},
    "web_progress": {"task": "Buy it.", "page": "WebShop\n[search box]"},
    "repair": {"answer": "I like it.", "error": "no number found"},
}


@pytest.fixture(autouse=True)
def _no_user_prompt_dirs(monkeypatch):
    monkeypatch.delenv(PROMPTS_ENV, raising=False)


def test_doctests():
    result = doctest.testmod(prompts)
    assert result.attempted > 5 and result.failed == 0


def test_shipped_templates_load_and_are_well_formed():
    assert set(SHIPPED) <= set(list_templates())
    for name in SHIPPED:
        t = load_template(name)
        assert (t.name, t.path.parent) == (name, PACKAGE_DIR)
        assert isinstance(t.version, int) and t.version >= 1 and t.description.strip()
        assert re.fullmatch(rf"{name}@v{t.version}\+[0-9a-f]{{8}}", t.key)
        assert t.cache_fields == {"template": name, "template_version": f"{t.version}+{t.text_hash}"}
        assert set(t.required_fields) <= set(FIELDS[name]) <= set(t.fields)
        text = t.render(**FIELDS[name])
        assert "$" not in text  # every placeholder filled
        for value in FIELDS[name].values():
            assert value in text
        chat = t.render_chat(**FIELDS[name])
        assert chat[-1]["role"] == "user" and chat[-1]["content"] == t.render_user(**FIELDS[name])
        assert [m["role"] for m in chat] == (["system", "user"] if t.system else ["user"])
        assert text == (chat[0]["content"].rstrip() + "\n\n" + chat[1]["content"] if t.system else chat[0]["content"])


def test_missing_and_unknown_fields_are_named():
    t = load_template("motif_pair")
    with pytest.raises(TemplateError, match="motif_pair@v1' needs field.*'description_2'"):
        t.render(task="t", description_1="a")
    with pytest.raises(TemplateError, match="no field.*'descripton_2'"):
        t.render(task="t", description_1="a", description_2="b", descripton_2="typo")
    with pytest.raises(TemplateError, match="must be str, int or float"):
        t.render(task="t", description_1="a", description_2=["b"])
    with pytest.raises(TemplateError, match="needs field"):
        t.render_chat(task="t")


def test_values_are_inserted_verbatim():
    t = load_template("rate_number")
    text = t.render(task="Collect $5 and {gold}.", caption="You find $$ ${caption} $task.")
    assert "Collect $5 and {gold}." in text and "You find $$ ${caption} $task." in text
    # braces in a rendered prompt survive (string.Template, not str.format)
    assert "{gold}" in text


def test_defaults_can_be_overridden():
    t = load_template("oni_label")
    assert "helpful" in t.defaults and "helpful" not in t.required_fields
    default = t.render(**FIELDS["oni_label"])
    custom = t.render(**FIELDS["oni_label"], helpful="Helpful means the door gets closer to open.")
    assert t.defaults["helpful"] in default and "door gets closer" in custom and t.defaults["helpful"] not in custom


# ---- faithfulness of the shipped prompts to METHODS.md -------------------------------------


def test_motif_pair_asks_for_analysis_and_best_description():
    t = load_template("motif_pair")
    text = t.render(**FIELDS["motif_pair"])
    assert "analyse each account" in text and '("best_description": None)' in text
    assert parse_choice('Analysis...\n("best_description": 1)', ["1", "2", "None"], key="best_description") == "1"


def test_oni_label_has_definition_examples_and_fixed_tokens():
    text = load_template("oni_label").render(**FIELDS["oni_label"])
    assert "FOO" in text and "BAR" in text and "<label>" in text and "Example 1" in text
    assert "counts as helpful when the event it reports moves the agent closer" in text
    # the format line itself is not an answer: both tokens in one label
    with pytest.raises(ParseError):
        parse_label("<label> [FOO or BAR] </label>")


def test_ellm_goals_has_verbs_two_bullet_examples_then_state():
    t = load_template("ellm_goals")
    text = t.render(**FIELDS["ellm_goals"])
    assert text.startswith("Valid actions: pick up, open, go to.")
    assert text.rstrip().endswith("You see a key and a locked door. You hold nothing. What do you do?")
    examples = t.defaults["examples"].strip().split("\n\n")
    assert len(examples) == 2
    for example in examples:
        question, *bullets = example.splitlines()
        assert question.endswith("What do you do?")
        assert parse_bullets("\n".join(bullets))  # the few-shot answers are in the required format


def test_rate_number_reward_code_and_repair():
    assert "Rating: N" in load_template("rate_number").render(**FIELDS["rate_number"])
    assert parse_number("Rating: 6", 0, 10) == 6.0
    code = load_template("reward_code").render(**FIELDS["reward_code"])
    assert "```python" in code and "potential(state: dict) -> float" in code and "(not given)" in code
    assert "has_key: bool" in code
    assert parse_python_block("```python\ndef potential(state):\n    return 0.0\n```", require_function="potential")
    repair = load_template("repair").render(answer="great!", error="no number found", answer_format="Rating: N")
    assert '"""\ngreat!\n"""' in repair and "no number found" in repair and "Rating: N" in repair


# ---- keys and lookup -----------------------------------------------------------------------


def write(dirpath, name, body):
    path = dirpath / f"{name}.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def test_key_changes_with_version_and_with_text(tmp_path):
    bodies = {
        "a": 'version = 1\ndescription = "d"\ntemplate = "Rate $x."\n',
        "b": 'version = 2\ndescription = "d"\ntemplate = "Rate $x."\n',  # version bump
        "c": 'version = 1\ndescription = "d"\ntemplate = "Rate $x!"\n',  # text edit, no bump
        "d": 'version = 1\ndescription = "other words"\ntemplate = "Rate $x."\n',
    }
    paths = []
    for folder, body in bodies.items():
        (tmp_path / folder).mkdir()
        paths.append(write(tmp_path / folder, "probe", 'name = "probe"\n' + body))
    a, b, c, d = paths
    ta, tb, tc, td = (PromptTemplate.from_file(p) for p in (a, b, c, d))
    assert ta.key != tb.key and ta.text_hash == tb.text_hash  # version bump
    assert ta.key != tc.key and ta.key.split("+")[0] == tc.key.split("+")[0]  # edit without bump
    assert ta.key == td.key  # the description is not part of the prompt
    keys = {cache_key(backend="hf", model="m", prompt="p", params={}, **t.cache_fields) for t in (ta, tb, tc)}
    assert len(keys) == 3


def test_user_dirs_are_searched_first(tmp_path, monkeypatch):
    write(tmp_path, "rate_number", 'name = "rate_number"\nversion = 7\ndescription = "mine"\ntemplate = "Mine: $caption"\n')
    write(tmp_path, "extra_one", 'name = "extra_one"\nversion = 1\ndescription = "x"\ntemplate = "hi"\n')
    monkeypatch.setenv(PROMPTS_ENV, str(tmp_path))
    assert load_template("rate_number").version == 7
    assert load_template("extra_one").render() == "hi"
    assert {"extra_one", *SHIPPED} <= set(list_templates())
    monkeypatch.delenv(PROMPTS_ENV)
    assert load_template("rate_number").version == 1
    assert load_template("extra_one", dirs=[tmp_path]).name == "extra_one"
    assert load_template(str(tmp_path / "extra_one.toml")).name == "extra_one"
    with pytest.raises(FileNotFoundError, match="no prompt template 'extra_one'.*available: .*ellm_goals"):
        load_template("extra_one")
    with pytest.raises(TemplateError, match="bad template name"):
        load_template("../secrets")


@pytest.mark.parametrize(
    "body, reason",
    [
        ('name = "other"\nversion = 1\ndescription = "d"\ntemplate = "t"\n', "differs from the file name"),
        ('name = "bad"\nversion = "1"\ndescription = "d"\ntemplate = "t"\n', "version must be an int"),
        ('name = "bad"\nversion = 0\ndescription = "d"\ntemplate = "t"\n', "version must be an int >= 1"),
        ('name = "bad"\nversion = 1\ndescription = "d"\n', "missing key"),
        ('name = "bad"\nversion = 1\ndescription = "d"\ntemplate = "costs $5"\n', "invalid '\\$' placeholder on line 1"),
        ('name = "bad"\nversion = 1\ndescription = "d"\ntemplate = "t"\ncolour = "red"\n', "unknown key"),
        ('name = "bad"\nversion = 1\ndescription = "d"\ntemplate = "t $a"\n[defaults]\nb = "x"\n', "does not use"),
        ('name = "bad"\nversion = 1\ndescription = "d"\ntemplate = ""\n', "non-empty"),
        ('name = "bad"\nversion = 1\ndescription = "d"\ntemplate = "t\n', "not valid TOML"),
    ],
)
def test_malformed_template_files_are_rejected(tmp_path, body, reason):
    with pytest.raises(TemplateError, match=reason):
        PromptTemplate.from_file(write(tmp_path, "bad", body))


def test_dollar_escape_and_system_fields():
    t = PromptTemplate(name="x", version=1, description="d", system="You judge $task.", template="Costs $$5: ${item}s")
    assert t.fields == ("item", "task")
    assert t.render_chat(task="t", item="coin") == [
        {"role": "system", "content": "You judge t."},
        {"role": "user", "content": "Costs $5: coins"},
    ]
