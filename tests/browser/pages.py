"""What the browser tests do on every page: sign in through the admin's login page."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect


def sign_in(browser: Browser, base: str, username: str, password: str) -> Page:
    """A fresh browser context signed in through the admin's login page."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)
    return page
