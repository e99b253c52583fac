"""Knowledge bases managed in the browser, for real: `chainlit run app.py` with accounts, headless Chromium,
the LLM stub. An admin adds a PDF to the `clinic` base from an upload and lists it with /kb; a plain
user's question in a persona bound to `clinic` cites it (also after switching persona back and forth), a
persona bound to the default base does not; a plain user can neither add nor remove — not through the
UI, not by calling the action route or the socket directly, and nothing at all without a login."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from kbchat.documents.passages import file_hash
from tests.browser.conftest import ask, browser_login, wait_answer
from tests.conftest import SHOTS_DIR, make_pdf
from tests.fixtures.appserver import PASSWORDS, kbchat_cli

OKAPI = ["Okapi clinic leaflet. Vaccination schedule for the okapi keepers.",
         "The okapi booster vaccine is given at 14 months, in the left arm."]
HANDBOOK = ["Office handbook. The office opens at 8 am. Booster seats are in room 4."]

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.shots(SHOTS_DIR),
              pytest.mark.app(admins=("boss",), users=("alice",), pdfs={"office-handbook.pdf": HANDBOOK})]


STARTER = {"doctor": "#starter-fever-in-a-child", "general": "#starter-summarise-a-document"}


def _persona(page, pid: str) -> None:
    """Pick a persona in the header (confirming the new chat when the current one has messages)."""
    from playwright.sync_api import expect

    page.locator("#chat-profiles").click()
    page.locator(f'[data-test="select-item:{pid}"]').click()
    try:
        page.locator("#confirm").click(timeout=3000)
    except Exception:  # an empty chat switches without asking
        pass
    expect(page.locator(STARTER[pid])).to_be_visible()  # the new session runs with that persona
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    page.wait_for_timeout(1000)


def _docs(app) -> str:
    return kbchat_cli("kb", "docs", "clinic", data_dir=app.root / "data", knowledge=app.root / "knowledge").stdout


def test_admin_adds_a_pdf_to_a_base_from_an_upload(app, browser, shots, facts, tmp_path):
    from playwright.sync_api import expect

    pdf = make_pdf(tmp_path / "okapi-leaflet.pdf", OKAPI)
    facts["okapi_hash"] = file_hash(pdf)
    ctx, page = browser_login(browser, app.url, "boss")
    page.locator("#upload-button-input").set_input_files(str(pdf))
    expect(page.locator("#attachments")).to_contain_text("okapi-leaflet.pdf")
    page.locator("#chat-submit").click()
    add = page.locator(f"#kbadd-clinic-{facts['okapi_hash'][:16]}")
    expect(add).to_be_visible()
    expect(page.locator(f"#kbadd-default-{facts['okapi_hash'][:16]}")).to_be_visible()
    shots(page, "1-admin-upload-offers-bases")
    add.click()
    done = page.locator(".step").filter(has_text="Added okapi-leaflet.pdf to knowledge base clinic: 2 pages, 2 passages")
    expect(done).to_be_visible(timeout=90_000)
    shots(page, "2-admin-added-to-clinic")
    # /kb lists the bases; /kb clinic the documents with who added them and when
    ask(page, "/kb")
    listing = page.locator(".step").filter(has_text="Knowledge bases (2)")
    expect(listing).to_be_visible()
    expect(listing).to_contain_text("clinic — 1 documents, 2 passages. Patient-information leaflets")
    expect(listing).to_contain_text("default — 1 documents")
    page.locator("#kbdocs-clinic").click()
    table = page.locator(".step").filter(has_text="clinic: 1 documents, 2 passages.")
    expect(table).to_be_visible()
    expect(table.locator("table")).to_contain_text("okapi-leaflet.pdf")
    expect(table.locator("table")).to_contain_text("boss")
    expect(table.locator("table")).to_contain_text("UTC")
    expect(page.locator("#kbrm-clinic-1")).to_be_visible()
    shots(page, "3-admin-kb-docs")
    ctx.close()
    row = _docs(app).splitlines()
    assert len(row) == 1 and row[0].startswith("okapi-leaflet.pdf\t2 pages\t2 passages\tboss\t"), row
    assert (app.root / "data" / "kb" / "clinic" / f"{facts['okapi_hash']}.pdf").is_file()


def test_persona_bound_to_the_base_cites_it_and_another_does_not(app, browser, shots, facts):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "alice")
    _persona(page, "doctor")
    ask(page, "When is the okapi booster vaccine given?")
    ans = wait_answer(page, 0)
    expect(ans).to_contain_text("okapi-leaflet.pdf, page 2")
    assert "14 months" in ans.inner_text()
    page.locator("a.element-link").filter(has_text=re.compile("source 1", re.I)).first.click()
    expect(page.locator("#side-view-content canvas").first).to_be_visible(timeout=30_000)
    shots(page, "4-user-doctor-cites-clinic-base")
    facts["doctor_thread"] = page.url.rstrip("/").split("/thread/")[-1]
    # no admin buttons for a plain user, and /kb is refused
    ask(page, "/kb")
    expect(page.locator(".step").filter(has_text="Only administrators can manage knowledge bases.")).to_be_visible()

    # switching persona switches bases: the general persona searches the default base only
    _persona(page, "general")
    ask(page, "When is the okapi booster vaccine given?")
    ans = wait_answer(page, 0)
    expect(ans).to_contain_text("office-handbook.pdf")
    assert "okapi-leaflet.pdf" not in ans.inner_text()
    shots(page, "5-user-general-does-not-see-clinic")

    # and back: resuming the doctor chat searches clinic again
    page.goto(f"/thread/{facts['doctor_thread']}")
    expect(page.locator("[data-step-type='assistant_message']").filter(
        has_text="okapi-leaflet.pdf").first).to_be_visible()
    # the resume has run once its last step, the Share button of the earlier answer, is back
    expect(page.locator("[id^=share-]").first).to_be_visible(timeout=30_000)
    ask(page, "Which arm is the okapi booster given in?")
    again = wait_answer(page, 1)
    expect(again).to_contain_text("okapi-leaflet.pdf")
    ctx.close()

    # the base's PDF route: any signed-in user, nobody without a login, unknown bases 404
    alice = httpx.Client(base_url=app.url, timeout=30)
    assert alice.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 200
    url = f"/kbchat/kb/clinic/{facts['okapi_hash']}"
    assert alice.get(url).content.startswith(b"%PDF")
    assert alice.get(f"/kbchat/kb/nope/{facts['okapi_hash']}").status_code == 404
    assert httpx.get(app.url + url, timeout=30).status_code == 401


def _socket_attempts(app, cookie: str | None, doc_hash: str, pdf: bytes):
    """As a plain user (or nobody): the action route and a /kb add message over the socket."""
    from tests.ui.test_load import Chat

    async def go():
        out = {}
        async with httpx.AsyncClient(base_url=app.url, timeout=60) as http:
            chat = Chat(app.url, cookie=cookie)
            await chat.connect()
            try:
                fid = await chat.upload(http, "mine.pdf", pdf)
                await chat.send("", [fid])  # indexed into her own chat
                out["offered"] = any("kbadd-" in str(m) for m in chat.messages.values())
                for name, payload in (("kb_add", {"base": "clinic", "doc_hash": file_hash_bytes(pdf)}),
                                      ("kb_remove", {"base": "clinic", "key": "okapi-leaflet.pdf"}),
                                      ("kb_docs", {"base": "clinic"})):
                    r = await http.post("/project/action", headers={"Cookie": cookie}, json={
                        "sessionId": chat.session_id,
                        "action": {"name": name, "payload": payload, "id": f"x-{name}", "forId": "x"}})
                    out[name] = r.status_code
                fid = await chat.upload(http, "sneaky.pdf", pdf)
                await chat.send("/kb add clinic", [fid])
                await chat.send("/kb remove clinic okapi-leaflet.pdf")
                await chat.send("/kb create sneaky")
                out["texts"] = [m.get("output", "") for m in chat.messages.values()]
            finally:
                await chat.close()
            # without a login: the action route refuses before any callback runs
            r = await http.post("/project/action", json={
                "sessionId": chat.session_id,
                "action": {"name": "kb_remove", "payload": {"base": "clinic", "key": "okapi-leaflet.pdf"},
                           "id": "y", "forId": "y"}})
            out["anonymous"] = r.status_code
        return out

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        return pool.submit(asyncio.run, go()).result(300)


def file_hash_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_plain_user_cannot_change_a_base_even_calling_the_server_directly(app, facts, tmp_path):
    before = _docs(app)
    assert "okapi-leaflet.pdf" in before
    alice = httpx.Client(base_url=app.url, timeout=30)
    assert alice.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 200
    cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
    pdf = make_pdf(tmp_path / "mine.pdf", ["Alice's own notes: the capybara clinic opens at noon."]).read_bytes()
    out = _socket_attempts(app, cookie, facts["okapi_hash"], pdf)
    print("plain user's direct attempts:", {k: v for k, v in out.items() if k != "texts"})
    assert out["offered"] is False
    assert out["kb_add"] == out["kb_remove"] == out["kb_docs"] == 200  # the callback ran, and refused
    refusals = [t for t in out["texts"] if t == "Only administrators can manage knowledge bases."]
    assert len(refusals) == 6, out["texts"]
    assert not any("Added" in t or "Removed" in t or "Created" in t for t in out["texts"])
    assert out["anonymous"] in (401, 403)
    assert _docs(app) == before  # nothing added, nothing removed
    assert not (app.root / "knowledge" / "sneaky").exists()
    log = app.read_log()
    assert "knowledge bases: removing a document in 'clinic' refused for 'alice' (may not manage it)" in log


def test_admin_removes_creates_and_adds_with_the_command(app, browser, shots, facts, tmp_path):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "boss")
    ask(page, "/kb clinic")
    rm = page.locator("#kbrm-clinic-1")
    expect(rm).to_be_visible()
    rm.click()
    expect(page.locator(".step").filter(
        has_text="Removed okapi-leaflet.pdf (2 passages) from knowledge base clinic.")).to_be_visible()
    shots(page, "6-admin-removed")
    # a folder document cannot be removed from the chat: its source is the folder
    ask(page, "/kb remove default office-handbook.pdf")
    expect(page.locator(".step").filter(has_text="comes from the folder (knowledge/office-handbook.pdf)")
           ).to_be_visible()
    # a new base, and files attached to `/kb add NAME` go straight into it (not into the chat)
    ask(page, "/kb create wards Ward procedures and rotas")
    expect(page.locator(".step").filter(has_text="Created knowledge base wards")).to_be_visible()
    rota = make_pdf(tmp_path / "ward-rota.pdf", ["Ward rota: night shifts start at 21:00."])
    page.locator("#upload-button-input").set_input_files(str(rota))
    expect(page.locator("#attachments")).to_contain_text("ward-rota.pdf")
    ask(page, "/kb add wards")
    expect(page.locator(".step").filter(has_text="Added ward-rota.pdf to knowledge base wards: 1 pages")
           ).to_be_visible(timeout=90_000)
    assert page.locator(".step").filter(has_text="Indexed ward-rota.pdf").count() == 0
    shots(page, "7-admin-created-base-and-added-with-command")
    ctx.close()
    assert _docs(app) == ""
    assert not (app.root / "data" / "kb" / "clinic" / f"{facts['okapi_hash']}.pdf").exists()
    assert "Ward procedures and rotas" in (app.root / "knowledge" / "wards" / "README.md").read_text()
    listed = kbchat_cli("kb", "list", data_dir=app.root / "data", knowledge=app.root / "knowledge").stdout
    assert "wards\t1 documents\t1 passages\tWard procedures and rotas" in listed, listed
