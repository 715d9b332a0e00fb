"""The technician's console in a real headless browser (Debian's chromium + chromedriver,
driven by selenium) against a real `sim` and a real mosquitto: the page loads, a click on
the panic button shows the alarm and the lamp within a second, a forced door shows in the
locker grid, a signed ack from the centre panel shows its result (and a key without the
right its refusal), a link cut shows offline and then the drained outbox.

Without chromium/chromedriver these tests skip, unless ANSIM_REQUIRE_BROWSER is set
(scripts/test.sh sets it and installs both), in which case they fail.

Screenshots for the docs: ``ANSIM_CONSOLE_SCREENSHOTS=docs/screenshots .venv/bin/pytest
tests/test_console_browser.py`` writes them at the main states (never on a plain run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.console import Sim, locker_cfg, running_sim, shelter_cfg
from tests.support.mqtt import Mosquitto
from tests.support.site import REPO, make_keys

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRE_ENV = "ANSIM_REQUIRE_BROWSER"
SHOTS = os.environ.get("ANSIM_CONSOLE_SCREENSHOTS", "").strip()
WINDOW = (1500, 1000)


def _find(paths: tuple[str, ...] | str) -> str | None:
    for p in (paths,) if isinstance(paths, str) else paths:
        if Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return None


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    chromium, chromedriver = _find(CHROMIUM), _find(CHROMEDRIVER)
    if chromium is None or chromedriver is None:
        why = "chromium and chromium-driver are not installed (apt-get install them)"
        if os.environ.get(REQUIRE_ENV, "").strip().lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"{REQUIRE_ENV} is set but {why}", pytrace=False)
        pytest.skip(why)
    profile = tempfile.mkdtemp(prefix="ansim-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: selenium-manager never runs (no network here).
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(d: WebDriver, what: Callable[[WebDriver], Any], timeout: float, message: str) -> Any:
    return WebDriverWait(d, timeout, poll_frequency=0.02).until(what, message)


def css(d: WebDriver, selector: str) -> WebElement:
    return d.find_element(By.CSS_SELECTOR, selector)


def shown(selector: str) -> Callable[[WebDriver], bool]:
    return lambda d: bool(d.find_elements(By.CSS_SELECTOR, selector))


def text_of(selector: str) -> Callable[[WebDriver], str]:
    return lambda d: css(d, selector).text


def open_console(d: WebDriver, sim: Sim, lang: str = "ko") -> None:
    d.get(sim.base + "/")
    d.execute_script("localStorage.setItem('ansim-console-lang', arguments[0])", lang)
    d.get(sim.base + "/")
    until(d, shown('#stream[data-state="open"]'), 10, "the event stream is open")
    until(d, shown('#broker-link[data-online="true"]'), 10, "the site is online")


def screenshot(d: WebDriver, name: str, selector: str | None = None) -> None:
    """Only with ANSIM_CONSOLE_SCREENSHOTS=DIR: the docs' pictures."""
    if not SHOTS:
        return
    out = Path(SHOTS)
    out.mkdir(parents=True, exist_ok=True)
    d.set_window_size(*WINDOW)
    if selector:
        css(d, selector).screenshot(str(out / name))
    else:
        d.save_screenshot(str(out / name))


def shown_entries(d: WebDriver) -> list[WebElement]:
    return [e for e in d.find_elements(By.CSS_SELECTOR, "#log-list .entry") if e.is_displayed()]


def severe_errors(d: WebDriver) -> list[str]:
    return [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_loads_and_draws_the_site(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        open_console(driver, sim)
        assert css(driver, "#site-id").text == "shelter-console-01"
        assert driver.title == "shelter-console-01 · ansim-edge"
        until(driver, shown('#alarm[data-state="idle"]'), 5, "the alarm banner")
        lamps = driver.find_elements(By.CSS_SELECTOR, ".lamp")
        assert [lamp.get_attribute("data-output") for lamp in lamps] == [
            "sent_led",
            "ack_led",
            "buzzer",
        ]
        assert all(lamp.get_attribute("data-on") == "false" for lamp in lamps)
        assert css(driver, "#outbox-pending").text == "0"
        assert css(driver, '[data-action="press"]').text == "누르기"
        assert css(driver, 'form[data-command="alarm.ack"]').is_displayed()
        until(driver, shown('#log-list .entry[data-name="site.started"]'), 5, "the log")
        # English on a click, and back.
        css(driver, "#lang").click()
        until(driver, lambda d: css(d, '[data-action="press"]').text == "Press", 2, "English")
        assert "Broker link: online" in css(driver, "#broker-link").text
        css(driver, "#lang").click()
        until(driver, lambda d: css(d, '[data-action="press"]').text == "누르기", 2, "Korean")
        assert severe_errors(driver) == []


def test_a_click_on_the_panic_button_shows_the_alarm_and_the_lamp_within_a_second(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        open_console(driver, sim)
        until(driver, shown('.lamp[data-output="sent_led"][data-on="false"]'), 5, "lamp off")
        start = time.monotonic()
        css(driver, '[data-action="press"][data-input="panic-counter"]').click()
        until(
            driver,
            shown('#alarm[data-state="active"]'),
            1.0,
            "the alarm on the page within a second of the click",
        )
        until(
            driver,
            shown('.lamp[data-output="sent_led"].on'),
            max(0.01, 1.0 - (time.monotonic() - start)),
            "the sent lamp lit within a second of the click",
        )
        state = sim.state()
        assert state["site"]["states"]["alarm"]["state"] == "active"
        alarm_id = state["site"]["states"]["alarm"]["alarm_id"]
        assert alarm_id in css(driver, "#alarm").text
        until(driver, shown('#log-list .entry[data-name="alarm.raised"]'), 5, "logged")
        screenshot(driver, "console-shelter-alarm.png")


def test_a_signed_ack_from_the_centre_panel_shows_its_result(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        open_console(driver, sim, lang="en")
        css(driver, '[data-action="press"][data-input="panic-counter"]').click()
        until(driver, shown('#alarm[data-state="active"]'), 5, "alarm")
        alarm_id = sim.state()["site"]["states"]["alarm"]["alarm_id"]
        form = 'form[data-command="alarm.ack"]'
        until(
            driver,
            lambda d: css(d, f'{form} input[name="alarm_id"]').get_attribute("value") == alarm_id,
            5,
            "the form follows the active alarm",
        )
        assert css(driver, "#key-dev").is_selected()
        css(driver, f"{form} button[type=submit]").click()
        until(driver, shown(f'{form} .result[data-state="ok"]'), 10, "the result next to the form")
        assert alarm_id in css(driver, f"{form} .result").text
        until(driver, shown('#alarm[data-state="acknowledged"]'), 5, "acknowledged")
        until(driver, shown('.lamp[data-output="ack_led"].on'), 5, "the ack lamp")
        assert sim.state()["site"]["states"]["alarm"]["acknowledged_by"] == "관제센터 콘솔"
        until(driver, shown('#log-list .entry[data-kind="result"]'), 5, "the result logged")
        screenshot(driver, "console-centre-ack.png")
        # Clear it from the panel too: the alarm returns to idle.
        css(driver, 'form[data-command="alarm.clear"] button[type=submit]').click()
        until(driver, shown('#alarm[data-state="idle"]'), 5, "idle again")


def test_a_key_file_without_the_right_is_refused_as_on_a_real_site(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path / "keys")
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", keys.trusted())) as sim:
        open_console(driver, sim)
        assert not css(driver, "#key-dev").is_enabled()  # this config has keys: no dev key
        css(driver, '[data-action="press"][data-input="panic-counter"]').click()
        until(driver, shown('#alarm[data-state="active"]'), 5, "alarm")
        css(driver, "#key-file").send_keys(str(keys.dir / "tech.key"))
        until(driver, lambda d: css(d, "#key-id").get_attribute("value") == "tech", 2, "key id")
        form = 'form[data-command="alarm.clear"]'
        css(driver, f"{form} button[type=submit]").click()
        until(driver, shown(f'{form} .result[data-code="not_allowed"]'), 10, "not_allowed")
        assert "not_allowed" in css(driver, f"{form} .result").text
        assert sim.state()["site"]["states"]["alarm"]["state"] == "active"
        # The centre's key may.
        key_id = css(driver, "#key-id")
        css(driver, "#key-file").send_keys(str(keys.dir / "centre.key"))
        key_id.clear()
        key_id.send_keys("centre")
        css(driver, f"{form} button[type=submit]").click()
        until(driver, shown(f'{form} .result[data-code="ok"]'), 10, "ok with the centre's key")
        until(driver, shown('#alarm[data-state="idle"]'), 5, "cleared")


def test_a_forced_door_shows_in_the_locker_grid(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(locker_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        open_console(driver, sim)
        cells = driver.find_elements(By.CSS_SELECTOR, ".locker")
        assert len(cells) == 34
        boards = driver.find_elements(By.CSS_SELECTOR, "select[data-action=board-mode]")
        assert len(boards) == 2
        cell = '.locker[data-locker="6"]'
        until(driver, shown(f'{cell}[data-state="free"]'), 5, "locker 6 free")
        css(driver, cell).click()
        css(driver, '[data-action="force-open"][data-locker="6"]').click()
        until(
            driver,
            shown(f'{cell}[data-door-state="open"][data-forced="true"]'),
            5,
            "locker 6 shows its door forced open",
        )
        assert "강제 열림" in css(driver, cell).text
        until(driver, shown('#log-list .entry[data-name="door.forced"]'), 5, "door.forced")
        # A board gone silent shows on its lockers.
        Select(css(driver, 'select[data-bus="rs485-0"][data-board="1"]')).select_by_value("silent")
        until(driver, shown('.locker[data-locker="17"][data-fault="true"]'), 10, "board fault")
        screenshot(driver, "console-lockers-forced.png")
        Select(css(driver, 'select[data-bus="rs485-0"][data-board="1"]')).select_by_value("ok")
        css(driver, '[data-action="shut-door"][data-locker="6"]').click()
        until(driver, shown(f'{cell}[data-door-state="closed"][data-forced="false"]'), 5, "shut")
        until(driver, shown('.locker[data-locker="17"][data-fault="false"]'), 10, "recovered")
        # The keypad types a code: a wrong one is rejected.
        for digit in "123456":
            css(driver, f'.keypad [data-key="{digit}"]').click()
        css(driver, '.keypad [data-key="enter"]').click()
        until(driver, lambda d: "pickup.rejected" in css(d, "#code-answer").text, 10, "rejected")


def test_the_link_cut_shows_offline_and_then_the_drained_outbox(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        open_console(driver, sim, lang="en")
        seconds = css(driver, "#link-seconds")
        seconds.clear()
        seconds.send_keys("3")
        css(driver, "#cut-link").click()
        until(driver, shown('#broker-link[data-online="false"]'), 5, "offline on the page")
        until(driver, shown('#link-state[data-cut="true"]'), 5, "the cut shown")
        css(driver, '[data-action="press"][data-input="panic-counter"]').click()
        until(driver, shown('#alarm[data-state="active"]'), 5, "alarm while offline")
        pending = until(
            driver,
            lambda d: (n := css(d, "#outbox-pending").text) not in ("", "0", "–") and n,
            5,
            "the outbox fills while offline",
        )
        # The escalation's SMS goes out at once: the link is down at the press.
        until(driver, shown("#sms-list li.ok"), 10, "the SMS in the modem panel")
        screenshot(driver, "console-link-cut.png")
        until(driver, shown('#broker-link[data-online="true"]'), 20, "online again")
        until(driver, lambda d: css(d, "#outbox-pending").text == "0", 15, "the outbox drained")
        assert int(pending) > 0
        until(driver, shown('#link-state[data-cut="false"]'), 5, "link up")
        until(driver, shown('#log-list .entry[data-kind="link"]'), 5, "the cut in the log")


def test_the_log_filters_by_device_and_type(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        open_console(driver, sim, lang="en")
        css(driver, '[data-action="press"][data-input="panic-counter"]').click()
        until(driver, shown('#log-list .entry[data-name="alarm.raised"]'), 5, "alarm logged")
        Select(css(driver, "#log-type")).select_by_value("event:alarm.raised")
        visible = shown_entries(driver)
        assert visible and all(e.get_attribute("data-name") == "alarm.raised" for e in visible)
        Select(css(driver, "#log-type")).select_by_value("")
        Select(css(driver, "#log-device")).select_by_value("modem")
        visible = shown_entries(driver)
        assert visible and all(e.get_attribute("data-device") == "modem" for e in visible)
        assert sim.get("/state").status == 200


def test_a_scenario_runs_from_the_console(
    driver: WebDriver, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The example store, so that its shipped scenarios fit (docs/scenarios.md).
    cfg = yaml.safe_load((REPO / "config/examples/shelter.yaml").read_text("utf-8"))
    cfg["data_dir"] = str(tmp_path / "d")
    cfg["broker"]["url"] = mosquitto.url
    # The browser is shared by the module: the last test's page is still open on its stopped
    # sim, and its EventSource retries /events there (connection refused, logged SEVERE) every
    # few seconds until the page goes. Leave it before draining the log: once on about:blank
    # nothing of an earlier page can log, however long this sim takes to start.
    driver.get("about:blank")
    driver.get_log("browser")  # what earlier tests' pages left (e.g. a request cut short)
    with running_sim(cfg) as sim:
        open_console(driver, sim, lang="en")
        button = '[data-action="run-scenario"][data-file="alarm-acknowledged.yaml"]'
        until(driver, shown(button), 5, "the scenario list")
        assert not driver.find_elements(
            By.CSS_SELECTOR, '[data-action="run-scenario"][data-file="jammed-door.yaml"]'
        ), "a locker scenario is not offered for a shelter store"
        css(driver, button).click()
        until(driver, shown('#scenario-summary[data-ok="true"]'), 60, "the scenario passed")
        assert css(driver, "#scenario-summary").text.startswith("PASSED: 15 steps")
        steps = driver.find_elements(By.CSS_SELECTOR, '#scenario-steps li[data-status="ok"]')
        assert len(steps) == 15
        assert "An alarm acknowledged by the centre" in css(driver, "#scenario-title").text
        assert severe_errors(driver) == []
