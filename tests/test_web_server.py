"""`align-gym serve-web` as a user starts it, driven by a real browser (Debian's headless chromium)."""

import re
import shutil
import subprocess
import sys
import tempfile

import gymnasium as gym
import httpx
import pytest
from servers import free_port, start_cli_server, stop

import align_gym  # noqa: F401
from align_gym.envs.web.webshop import scripted_shopper

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SEED = 4


@pytest.fixture(scope="module")
def shop():
    port = free_port()
    process = start_cli_server(["serve-web", "--env", "Align/WebShop-v0", "--seed", str(SEED), "--port", str(port)],
                               f"http://127.0.0.1:{port}/", timeout=60)
    yield f"http://127.0.0.1:{port}"
    stop(process)


def expected_purchase() -> tuple[list[str], float]:
    env = gym.make("Align/WebShop-v0")
    env.reset(seed=SEED)
    actions = scripted_shopper(env.unwrapped)
    env.reset(seed=SEED)
    reward = sum(env.step(action)[1] for action in actions)
    return actions, reward


def token_of(page: str) -> str:
    """The episode's token, as the page's forms carry it."""
    tokens = set(re.findall(r'name="token" value="([^"]+)"', page))
    assert len(tokens) == 1, tokens  # every form, the same token
    return tokens.pop()


def reset(shop: str, seed: int | str) -> httpx.Response:
    """Start an episode as the page's own reset form would."""
    with httpx.Client(base_url=shop) as client:
        return client.post("/reset", data={"token": token_of(client.get("/").text), "seed": str(seed)})


def test_pages_and_actions_over_plain_http(shop):
    actions, reward = expected_purchase()
    assert reset(shop, SEED).status_code == 303
    first = httpx.get(shop + "/").text
    assert "Instruction: i am looking for" in first and 'name="q"' in first
    with httpx.Client(base_url=shop) as client:
        token = token_of(first)
        answer = client.post("/act", data={"token": token, "a": "click[nothing]"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"  # reloading / repeats nothing
        assert "Nothing to click called" in client.get("/").text
        query = actions[0][len("search["):-1]
        assert client.post("/search", data={"token": token, "q": query}).status_code == 303
        assert "total results" in client.get("/").text
        for action in actions[1:]:
            assert client.post("/act", data={"token": token, "a": action}).status_code == 303
        page = client.get("/").text
        assert f"Your score: {reward:.2f}" in page and "Episode over" in page
        client.post("/act", data={"token": token, "a": "click[Buy Now]"})
        assert "The episode is over" in client.get("/").text
        assert reset(shop, SEED).status_code == 303
        assert "[search box]" not in client.get("/").text  # HTML, not the text view
        assert client.get("/act", params={"a": "click[Buy Now]"}).status_code == 405  # actions are never links
        assert client.get("/nowhere").status_code == 404


def test_an_action_without_the_episodes_token_is_refused_and_changes_nothing(shop):
    reset(shop, SEED)
    actions, _ = expected_purchase()
    with httpx.Client(base_url=shop) as client:
        before = client.get("/").text
        for form in [{"a": actions[0]}, {"token": "guess", "a": actions[0]}]:
            answer = client.post("/act", data=form)
            assert answer.status_code == 403 and "token" in answer.text
        assert client.post("/search", data={"q": "mug"}).status_code == 403
        assert client.post("/reset", data={"seed": "7"}).status_code == 403
        assert client.get("/").text == before
        # A form from an earlier episode is stale once another starts.
        old = token_of(before)
        reset(shop, SEED)
        assert client.post("/act", data={"token": old, "a": actions[0]}).status_code == 403
        assert client.get("/").text.replace(token_of(client.get("/").text), old) == before


def test_a_request_naming_another_host_is_refused(shop):
    port = shop.rsplit(":", 1)[1]
    with httpx.Client(base_url=shop) as client:
        # A page on another site that rebinds its name to 127.0.0.1 (DNS rebinding) names itself.
        for host in [f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"localhost:{int(port) + 1}"]:
            answer = client.get("/", headers={"Host": host})
            assert answer.status_code == 403 and "Host" in answer.text, host
        for host in [f"localhost:{port}", f"127.0.0.1:{port}"]:
            assert client.get("/", headers={"Host": host}).status_code == 200
        before = client.get("/").text
        answer = client.post("/act", data={"token": token_of(before), "a": "click[nothing]"},
                             headers={"Host": f"evil.example:{port}"})
        assert answer.status_code == 403
        assert client.get("/").text == before


def test_a_bad_seed_gets_400_with_the_reason_and_changes_nothing(shop):
    reset(shop, SEED)
    before = httpx.get(shop + "/").text
    for seed in ["\u00b2", "9" * 5000, "-1", str(2**63), "3.0", "0x10", "\u0663"]:
        answer = reset(shop, seed)
        assert answer.status_code == 400 and "seed" in answer.text, seed[:20]
        assert len(answer.text) < 2000  # the reason, not the 5,000 digits back
    assert httpx.get(shop + "/").text == before
    assert reset(shop, 2**63 - 1).status_code == 303
    assert reset(shop, SEED).status_code == 303
    assert httpx.get(shop + "/").text.replace(token_of(httpx.get(shop + "/").text), token_of(before)) == before


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
def test_a_real_browser_completes_a_purchase_with_the_expected_score(shop):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def click_and_wait(element) -> None:
        """Click, then wait for the next page (each action posts a form, then follows the redirect to /).
        Between the two, chromedriver may say the old page's node "does not belong to the document"
        rather than that it is stale: wait on."""
        body = browser.find_element(By.TAG_NAME, "body")
        element.click()
        WebDriverWait(browser, 10, ignored_exceptions=[WebDriverException]).until(expected_conditions.staleness_of(body))

    actions, reward = expected_purchase()
    reset(shop, SEED)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='align-chromium-')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(shop + "/")
        assert "Instruction:" in browser.page_source
        # A person's way through the shop: type the search, press its button, press each button.
        browser.find_element(By.ID, "search").send_keys(actions[0][len("search["):-1])
        click_and_wait(browser.find_element(By.ID, "search-button"))
        assert "total results" in browser.page_source
        for action in actions[1:]:
            label = re.fullmatch(r"click\[(.*)\]", action).group(1)
            click_and_wait(next(button for button in browser.find_elements(By.TAG_NAME, "button") if button.text == label))
        text = browser.find_element(By.TAG_NAME, "body").text
        assert f"Your score: {reward:.2f}" in text and reward == pytest.approx(1.0)
    finally:
        browser.quit()


def test_serve_web_refuses_envs_without_pages_and_bad_seeds():
    for arguments, message in [(["--env", "Align/ToolCalc-v0"], "no web pages"), (["--seed", "-1"], "seed")]:
        done = subprocess.run([sys.executable, "-m", "align_gym.cli", "serve-web", *arguments],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
