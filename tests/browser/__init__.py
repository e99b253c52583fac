"""The real app in headless Chromium; its own conftest (browser, screenshots, signing in)."""
