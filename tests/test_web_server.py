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


def test_pages_and_actions_over_plain_http(shop):
    actions, reward = expected_purchase()
    first = httpx.get(shop + "/").text
    assert "Instruction: i am looking for" in first and 'name="q"' in first
    with httpx.Client(base_url=shop, follow_redirects=True) as client:
        assert "Nothing to click called" in client.get("/act", params={"a": "click[nothing]"}).text
        query = actions[0][len("search["):-1]
        assert "total results" in client.get("/search", params={"q": query}).text
        for action in actions[1:]:
            page = client.get("/act", params={"a": action}).text
        assert f"Your score: {reward:.2f}" in page and "Episode over" in page
        assert "The episode is over" in client.get("/act", params={"a": "click[Buy Now]"}).text
        assert "[search box]" not in client.get("/reset", params={"seed": SEED}).text  # HTML, not the text view
        assert client.get("/nowhere").status_code == 404


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
def test_a_real_browser_completes_a_purchase_with_the_expected_score(shop):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def click_and_wait(element) -> None:
        """Click, then wait for the next page (each action redirects to a new one)."""
        body = browser.find_element(By.TAG_NAME, "body")
        element.click()
        WebDriverWait(browser, 10).until(expected_conditions.staleness_of(body))

    actions, reward = expected_purchase()
    httpx.get(shop + "/reset", params={"seed": SEED})
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
        # A person's way through the shop: type the search, press the button, click the links.
        browser.find_element(By.ID, "search").send_keys(actions[0][len("search["):-1])
        click_and_wait(browser.find_element(By.ID, "search-button"))
        assert "total results" in browser.page_source
        for action in actions[1:]:
            label = re.fullmatch(r"click\[(.*)\]", action).group(1)
            click_and_wait(browser.find_element(By.LINK_TEXT, label))
        text = browser.find_element(By.TAG_NAME, "body").text
        assert f"Your score: {reward:.2f}" in text and reward == pytest.approx(1.0)
    finally:
        browser.quit()


def test_serve_web_refuses_envs_without_pages():
    done = subprocess.run([sys.executable, "-m", "align_gym.cli", "serve-web", "--env", "Align/ToolCalc-v0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no web pages" in done.stderr
