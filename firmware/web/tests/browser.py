#!/usr/bin/env python3
"""Drives the status page in headless Chromium (Debian's chromium and
chromium-driver, selenium from PyPI): a wrong PIN is refused, the right one
unlocks; the uplink cards, the suggestion and the handover history show
what the box reports; the buttons send their commands; screenshots of a
desktop and a phone viewport are saved and checked (size, no horizontal
scrolling on the phone).

    browser.py URL PIN OUTDIR   -> prints a JSON summary, exit 0 when all held
"""
import json
import pathlib
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def driver(width, height, phone=False):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--hide-scrollbars", "--lang=en-US"):
        opts.add_argument(a)
    if phone:
        # A window cannot be narrower than 500 px: emulate the phone's screen.
        opts.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": True},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
        })
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def login(d, wait, url, pin):
    d.get(url)
    wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
    d.find_element(By.ID, "pin").send_keys(pin)
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()


def main():
    url, pin, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    d = driver(1280, 900)
    try:
        wait = WebDriverWait(d, 15)
        login(d, wait, url, "0000")
        wait.until(lambda d: "wrong PIN" in d.find_element(By.ID, "login-error").text)
        result["wrong_pin"] = d.find_element(By.ID, "login-error").text
        d.find_element(By.ID, "pin").send_keys(pin)
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "app").is_displayed())
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#uplinks .card")) == 2)
        # Read in one script: the page re-renders on every live update.
        page = d.execute_script("""
            const q = (s) => [...document.querySelectorAll(s)];
            return {
              cards: q('#uplinks .card').map(c => c.dataset.uplink + ':' + c.className),
              bars_on: q('#uplinks .card:first-child .bars i.on').length,
              problems: q('#uplinks .card .problem').map(p => p.closest('.card').dataset.uplink + ': ' + p.textContent),
              suggestion: document.getElementById('suggestion-text').textContent,
              banner_visible: !document.getElementById('suggestion').hidden,
              handovers: q('#handovers tbody tr').map(r => r.innerText),
              connected: document.getElementById('conn').textContent,
              passkey: document.getElementById('passkey').hidden ? '' : document.getElementById('passkey').innerText,
              bluetooth: document.getElementById('bluetooth').textContent,
              clients: q('#pan-clients .client').map(c => c.textContent),
              wifi_ap: document.getElementById('wifi-ap').textContent,
            };""")
        result.update(page)
        # The join code shows while pairing is open; its pixels for zbar.
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('wifi-qr');"
            "return !document.getElementById('wifi-join').hidden && i.complete && i.naturalWidth > 0"))
        result["wifi_qr_loaded"] = True
        d.find_element(By.ID, "wifi-qr").screenshot(str(out / "wifi-qr.png"))
        d.save_screenshot(str(out / "status-desktop.png"))
        # The buttons: use LTE, approve the suggestion, manual mode.
        d.execute_script("document.querySelector('.card[data-uplink=\"lte\"] button').click()")
        wait.until(lambda d: d.find_element(By.ID, "message").text == "done")
        d.execute_script("document.getElementById('message').textContent = ''")
        d.find_element(By.ID, "passkey-yes").click()
        wait.until(lambda d: d.find_element(By.ID, "message").text == "done")
        d.execute_script("document.getElementById('message').textContent = ''")
        d.find_element(By.ID, "approve").click()
        wait.until(lambda d: d.find_element(By.ID, "message").text == "done")
        d.execute_script("document.getElementById('message').textContent = ''")
        # The window closed meanwhile (the test's box): the button opens it.
        wait.until(lambda d: d.find_element(By.ID, "pair").text == "Open pairing")
        d.find_element(By.ID, "pair").click()
        wait.until(lambda d: d.find_element(By.ID, "message").text != "")
        result["pair"] = d.find_element(By.ID, "message").text
        # Live updates: the box's state changes (the test flips it after
        # the approval); the page follows without a reload.
        active = "return (document.querySelector('.card.active') || {dataset: {}}).dataset.uplink"
        wait.until(lambda d: d.execute_script(active) == "lte")
        result["live_active"] = d.execute_script(active)
    finally:
        d.quit()
    # A phone.
    m = driver(390, 844, phone=True)
    try:
        wait = WebDriverWait(m, 15)
        login(m, wait, url, pin)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#uplinks .card")) == 2)
        # The approved switch is done: no suggestion is shown any more.
        wait.until(lambda d: d.execute_script("return document.getElementById('suggestion').hidden"))
        result["mobile_banner_visible"] = m.find_element(By.ID, "suggestion").is_displayed()
        result["mobile_scroll_width"] = m.execute_script("return document.documentElement.scrollWidth")
        result["mobile_inner_width"] = m.execute_script("return window.innerWidth")
        m.save_screenshot(str(out / "status-phone.png"))
    finally:
        m.quit()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
