"""The demo in a real headless Chromium: two players, consent, live renames, the cached profile,
errors and their recovery, and ttminis.js's errors with stand-ins for Socket.IO and the SDK.

The Chromium plumbing (launch, pages, screenshots) is in ``tests/browser.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser import blank_player_page, name_of, player_page, screenshot
from game import FAST_UPSTREAM, Game, run_game

from tiktok_minis import Settings


async def test_allow_on_one_page_renames_live_on_the_other(browser: Any, game: Game) -> None:
    """Player A allows; player B, watching the board after a denial, sees A's name appear live."""
    alice = await player_page(browser, game.url + "/")
    bob = await player_page(browser, game.url + "/")
    await alice.wait_for_function("document.getElementById('me-name').textContent.trim() !== ''")
    assert await name_of(alice) == "TikTok Player"
    for _ in range(4):
        await alice.click("#tap")
    await alice.wait_for_function("Number(document.getElementById('best').textContent) > 0")

    await bob.click("#open-board")
    await bob.click(".ttminis-deny")
    await bob.wait_for_selector("#entries li")
    assert "TikTok Player" in str(await bob.text_content("#entries"))

    await alice.click("#open-board")
    await alice.click(".ttminis-allow")
    await alice.wait_for_function(
        "!document.getElementById('me-name').textContent.includes('TikTok Player')"
    )
    real_name = await name_of(alice)
    await bob.wait_for_function(
        "name => document.getElementById('entries').textContent.includes(name)", arg=real_name
    )
    await screenshot(alice, "alice-allowed")
    await screenshot(bob, "bob-sees-alice")
    assert await alice.query_selector("#entries li.mine") is not None
    assert alice.errors == [] and bob.errors == []


async def test_denial_keeps_the_placeholder_and_never_prompts_again(
    browser: Any, game: Game
) -> None:
    """Deny shows "TikTok Player"; opening the board again, even after a reload, asks nothing."""
    page = await player_page(browser, game.url + "/")
    await page.click("#open-board")
    await page.click(".ttminis-deny")
    await page.wait_for_function(
        "document.getElementById('me-consent').textContent.includes('private')"
    )
    assert await name_of(page) == "TikTok Player"
    await page.reload()
    await page.click("#open-board")
    await page.wait_for_selector("#board:not([hidden])")
    await page.wait_for_load_state("networkidle")
    assert await page.query_selector(".ttminis-consent") is None
    assert await name_of(page) == "TikTok Player"
    await screenshot(page, "denied-no-second-popup")


async def test_reload_shows_the_cached_profile_before_the_network(browser: Any, game: Game) -> None:
    """A returning player sees their name at once, even while the server does not answer."""
    page = await player_page(browser, game.url + "/")
    await page.click("#open-board")
    await page.click(".ttminis-allow")
    await page.wait_for_function(
        "!document.getElementById('me-name').textContent.includes('TikTok Player')"
    )
    real_name = await name_of(page)

    async def swallow(websocket: Any) -> None:
        """Accept the socket and never answer: the server is unreachable."""

    await page.route_web_socket("**/socket.io/**", swallow)
    await page.reload(wait_until="domcontentloaded")
    await page.wait_for_function(
        "name => document.getElementById('me-name').textContent === name", arg=real_name
    )
    assert await page.text_content("#status") != "connected"
    await screenshot(page, "cached-profile-offline")


DEMO_CSS = Path(__file__).resolve().parent.parent / "example_server" / "static" / "demo.css"
LOGGED_IN = "document.getElementById('me-name').textContent === 'TikTok Player'"
ERROR_LINE = "document.getElementById('last-error').textContent"


async def _new_player(browser: Any, game: Game) -> Any:
    """A first launch of the demo, logged in silently (the placeholder)."""
    page = await player_page(browser, game.url + "/")
    await page.wait_for_function(LOGGED_IN)
    return page


async def test_a_scorer_watches_the_board_live_without_being_asked(
    browser: Any, game: Game
) -> None:
    """A scores: the board opens on A, live, with no consent prompt. B scores, opens the board
    and allows: B's real name appears live on both pages, and A was never asked."""
    alice = await _new_player(browser, game)
    bob = await _new_player(browser, game)
    await alice.click("#tap")
    await alice.wait_for_selector("#board:not([hidden]) #entries li.mine")
    await bob.click("#tap")
    await bob.wait_for_selector("#board:not([hidden]) #entries li.mine")
    await alice.wait_for_function("document.querySelectorAll('#entries li').length === 2")
    assert await alice.query_selector(".ttminis-consent") is None
    assert await bob.query_selector(".ttminis-consent") is None

    await bob.click("#open-board")
    await bob.click(".ttminis-allow")
    await bob.wait_for_function(f"!({LOGGED_IN})")
    real_name = await name_of(bob)
    for page in (alice, bob):
        await page.wait_for_function(
            "name => document.getElementById('entries').textContent.includes(name)", arg=real_name
        )
    await screenshot(alice, "scorer-sees-bob-live")
    assert await name_of(alice) == "TikTok Player"
    assert await alice.query_selector(".ttminis-consent") is None
    assert alice.errors == [] and bob.errors == []


async def test_best_comes_back_from_the_server_after_a_reload(browser: Any, game: Game) -> None:
    """After a reload the best height is the server's (and the board is watched), untapped."""
    page = await _new_player(browser, game)
    for _ in range(3):
        await page.click("#tap")
    await page.wait_for_function(
        "document.getElementById('best').textContent === document.getElementById('score')"
        ".textContent"
    )
    best = str(await page.text_content("#best"))
    assert int(best) > 0
    await page.reload()
    await page.wait_for_function(
        "best => document.getElementById('best').textContent === best", arg=best
    )
    assert await page.text_content("#score") == "0"
    await page.wait_for_selector("#board:not([hidden]) #entries li.mine")
    assert page.errors == []


async def test_a_failed_login_is_shown_then_retried_by_itself(browser: Any, game: Game) -> None:
    """TikTok's login fails once: the page says sdk_failed with TikTok's error, retries after a
    second, logs in without a reload and clears the line."""
    page = await blank_player_page(browser)
    logins: list[str] = []

    async def fail_once(route: Any) -> None:
        logins.append(route.request.url)
        if len(logins) == 1:
            await route.fulfill(status=503, json={"error": "TikTok is busy"})
        else:
            await route.fallback()

    await page.route("**/ttminis/sandbox/login", fail_once)
    await page.goto(game.url + "/")
    await page.wait_for_function(f"{ERROR_LINE}.startsWith('sdk_failed: ')")
    shown = str(await page.text_content("#last-error"))
    assert "TikTok's login failed (error_code -1: TikTok is busy)" in shown, shown
    assert "retrying in 1 s" in shown
    await screenshot(page, "login-failed-retrying")
    await page.wait_for_function(LOGGED_IN)
    await page.wait_for_function(f"{ERROR_LINE} === ''")
    assert len(logins) == 2
    assert page.errors == []


#: Tap (one submit) at each poll until the error line starts with ``prefix``: the line and
#: the best height then.
TAP_UNTIL_ERROR = f"""prefix => {{
  const line = {ERROR_LINE};
  if (line.startsWith(prefix)) return [line, Number(document.getElementById('best').textContent)];
  document.getElementById('tap').click();
  return false;
}}"""
#: Tap at each poll until the error line is empty: the best height then.
TAP_UNTIL_CLEAR = f"""() => {{
  if ({ERROR_LINE} === '') return Number(document.getElementById('best').textContent) || -1;
  document.getElementById('tap').click();
  return false;
}}"""


async def test_an_ack_error_is_shown_until_the_next_success(browser: Any, sqlite_url: str) -> None:
    """Tapping past the event limit shows rate_limited with the server's message; the line
    clears with a later accepted score (a new best), not before."""
    settings = Settings(
        sandbox=True,
        database_url=sqlite_url,
        events_per_second=2,
        events_burst=4,
        **FAST_UPSTREAM,
    )
    async with run_game(settings) as game:
        page = await _new_player(browser, game)
        shown = await page.wait_for_function(TAP_UNTIL_ERROR, arg="rate_limited: ", polling=50)
        line, best_then = await shown.json_value()
        assert "Too many events" in line
        await screenshot(page, "rate-limited")
        # Slower than the refill (2 a second): a tap's score is accepted, and clears the line.
        cleared = await page.wait_for_function(TAP_UNTIL_CLEAR, polling=1000)
        assert await cleared.json_value() > best_then
        assert page.errors == []


async def test_a_rename_says_what_happens_and_fetches_on_request(browser: Any, game: Game) -> None:
    """After a sandbox rename the page says the game shows it at the next profile fetch, and
    "Fetch it now" (TikTok's popup, Allow) shows it."""
    page = await _new_player(browser, game)
    await page.click(".sandbox summary")
    await page.fill("#rename", "Zed Renamed")
    await page.click("#rename-form button[type=submit]")
    await page.wait_for_selector("#rename-note:not([hidden])")
    note = str(await page.text_content("#rename-note"))
    assert 'Renamed to "Zed Renamed" on TikTok' in note
    assert "next profile fetch" in note
    assert await name_of(page) == "TikTok Player"
    await screenshot(page, "renamed-on-tiktok")
    await page.click("#fetch-profile")
    await page.click(".ttminis-allow")
    await page.wait_for_function("document.getElementById('me-name').textContent === 'Zed Renamed'")
    assert await page.is_hidden("#rename-note")
    assert await page.text_content("#last-error") == ""
    assert page.errors == []


#: The consent sheet on a page with none of the demo's styles: its computed look.
SHEET_STYLE = """() => {
  const look = (selector, ...names) => {
    const style = getComputedStyle(document.querySelector(selector));
    return Object.fromEntries(names.map((name) => [name, style[name]]));
  };
  const card = document.querySelector('.ttminis-consent-card').getBoundingClientRect();
  return {
    styles: document.querySelectorAll('style#ttminis-sandbox-style').length,
    overlay: look('.ttminis-consent', 'position', 'display', 'alignItems'),
    card: look('.ttminis-consent-card', 'backgroundColor', 'borderTopLeftRadius'),
    allow: look('.ttminis-allow', 'backgroundColor', 'color', 'borderTopWidth', 'width'),
    deny: look('.ttminis-deny', 'backgroundColor'),
    bottom: card.bottom, width: card.width, innerHeight, innerWidth,
  };
}"""


def test_the_demo_leaves_the_sheet_styles_to_the_sandbox_sdk() -> None:
    """demo.css has no rule for the sandbox's consent sheet: sandbox-sdk.js brings them."""
    assert "ttminis-" not in DEMO_CSS.read_text()


async def test_the_sandbox_sheet_brings_its_own_styles(browser: Any, game: Game) -> None:
    """On a bare page (no demo.css) the consent sheet is the demo's: a bottom sheet, a white
    card, a pink Allow; its styles are added once."""
    page = await player_page(browser, game.url + "/healthz")
    await page.set_content(
        "<!doctype html><html><head><title>Bare game</title>"
        '<script src="/ttminis/static/sandbox-sdk.js"></script></head><body>bare</body></html>'
    )
    for _ in range(2):
        await page.evaluate("TTMinis.game.authorize({scope: 'user.info.basic'})")
        await page.wait_for_selector(".ttminis-allow")
        look = await page.evaluate(SHEET_STYLE)
        assert look["styles"] == 1
        assert look["overlay"] == {"position": "fixed", "display": "flex", "alignItems": "flex-end"}
        assert look["card"] == {
            "backgroundColor": "rgb(255, 255, 255)",
            "borderTopLeftRadius": "16px",
        }
        assert look["allow"]["backgroundColor"] == "rgb(254, 44, 85)"
        assert look["allow"]["color"] == "rgb(255, 255, 255)"
        assert look["allow"]["borderTopWidth"] == "0px"
        assert look["deny"] == {"backgroundColor": "rgb(241, 241, 242)"}
        assert look["bottom"] == look["innerHeight"] and look["width"] == look["innerWidth"]
        await screenshot(page, "sandbox-sheet-bare-page")
        await page.click(".ttminis-deny")
        await page.wait_for_selector(".ttminis-consent", state="detached")
    assert page.errors == []


#: ttminis.js with stand-ins for Socket.IO and TikTok's SDK: what each failure rejects with.
CLIENT_ERRORS = """async () => {
  const { createMinis, MinisError, CLIENT_CODES, ACK_TIMEOUT_MS } =
    await import('/ttminis/static/ttminis.js');
  const PLAYER = { id: 'p1', open_id: 'o1', display_name: 'TikTok Player',
                   avatar_url: '/a.svg', placeholder: true, consent: 'unknown' };
  const memory = (player) => {
    const values = new Map(player ? [['ttminis.player', player]] : []);
    return { get: (k) => values.get(k), set: (k, v) => values.set(k, v),
             remove: (k) => values.delete(k) };
  };
  // A connected socket whose acks come from answer(event, payload).
  const fakeSocket = (answer) => {
    const socket = {
      connected: true, sent: [], on() {}, once() {}, connect() {},
      timeout: (ms) => ({ emitWithAck: async (event, payload) => {
        socket.sent.push({ event, payload, ms });
        return answer(event, payload);
      } }),
    };
    return socket;
  };
  const client = (answer, sdk, player) => {
    const socket = fakeSocket(answer);
    const minis = createMinis({ io: () => socket, sdk, storage: memory(player) });
    return { minis, socket };
  };
  const describe = (e) => ({
    isMinisError: e instanceof MinisError, name: e.name, code: e.code, message: e.message,
    errorCode: e.errorCode, sdkError: e.sdkError === undefined ? 'none' : e.sdkError,
    ack: e.ack === undefined ? 'none' : e.ack,
  });
  const failure = async (promise) => {
    try { await promise; return 'resolved'; } catch (e) { return describe(e); }
  };
  const okLogin = ({ success }) => success({ code: 'code-1' });
  const loginAck = () => ({ ok: true, player: PLAYER, session: 's1' });
  const failingLogin = (raw) => client(loginAck, { game: { login: ({ fail }) => fail(raw) } });
  const out = {};
  try { createMinis({ storage: memory() }); out.noSocket = 'no throw'; }
  catch (e) { out.noSocket = describe(e); }
  const bare = client(loginAck, undefined, null);
  out.noSdkLogin = await failure(bare.minis.login());
  out.noSdkProfile = await failure(bare.minis.ensureProfile());
  out.tiktok = await failure(failingLogin(
    { error: { error_code: 10001, error_msg: 'user cancelled', error_extra: {} } }).minis.login());
  out.older = await failure(failingLogin({ errCode: '20', errMsg: 'old SDK' }).minis.login());
  out.nothing = await failure(failingLogin(undefined).minis.login());
  out.text = await failure(failingLogin('boom').minis.login());
  out.thrown = await failure(client(loginAck, { game: { login() { throw new Error('crashed'); } } })
    .minis.login());
  out.noCode = await failure(client(loginAck, { game: { login: ({ success }) => success({}) } })
    .minis.login());
  const sdk = { game: { login: okLogin } };
  const late = client(() => Promise.reject(new Error('operation has timed out')), sdk);
  out.timeout = await failure(late.minis.login());
  out.timeoutMs = late.socket.sent[0].ms;
  const limited = { ok: false, error: { code: 'rate_limited', message: 'Too many events.' } };
  out.wire = await failure(client(() => limited, sdk).minis.login());
  out.garbage = await failure(client(() => 'garbage', sdk).minis.login());
  out.incomplete = await failure(client(() => ({ ok: true }), sdk).minis.login());
  out.noWireCode = await failure(client(() => ({ ok: false, error: {} }), sdk).minis.login());
  const denied = { error: { error_code: 10001, error_msg: 'user denied', error_extra: {} } };
  const declined = client(() => ({ ok: true, player: { ...PLAYER, consent: 'denied' } }),
    { game: { login: okLogin, authorize: ({ fail }) => fail(denied) } }, PLAYER);
  const statuses = [];
  declined.minis.onStatus((state, detail) =>
    statuses.push([state, detail.errorCode, detail.error.code, detail.error.message]));
  out.declinedConsent = (await declined.minis.ensureProfile()).consent;
  out.declinedStatuses = statuses;
  out.declinedSent = declined.socket.sent.map((s) => [s.event, s.payload]);
  const noPopup = client(loginAck, { game: { login: okLogin } }, PLAYER);
  out.noAuthorize = await failure(noPopup.minis.ensureProfile());
  out.noAuthorizeSent = noPopup.socket.sent.length;
  out.clientCodes = [...CLIENT_CODES];
  out.frozen = Object.isFrozen(CLIENT_CODES);
  out.ackTimeout = ACK_TIMEOUT_MS;
  return out;
}"""


def _sdk_failed(message: str, error_code: int | None, sdk_error: Any) -> dict[str, Any]:
    return {
        "isMinisError": True,
        "name": "MinisError",
        "code": "sdk_failed",
        "message": message,
        "errorCode": error_code,
        "sdkError": sdk_error,
        "ack": "none",
    }


async def test_every_rejection_is_a_minis_error_with_a_code(browser: Any, game: Game) -> None:
    """TikTok's failures (every shape), a missing SDK or socket client, a timeout and malformed
    acks all reject with a MinisError whose .code says which; a declined popup stays soft."""
    page = await player_page(browser, game.url + "/healthz")  # no io, no TTMinis on this page
    out = await page.evaluate(CLIENT_ERRORS)
    assert out["noSocket"]["isMinisError"] and out["noSocket"]["code"] == "no_socket_client"
    for key in ("noSdkLogin", "noSdkProfile", "noAuthorize"):
        assert out[key]["isMinisError"] and out[key]["code"] == "sdk_unavailable", out[key]
    assert out["noAuthorizeSent"] == 0
    tiktok = {"error": {"error_code": 10001, "error_msg": "user cancelled", "error_extra": {}}}
    assert out["tiktok"] == _sdk_failed(
        "TikTok's login failed (error_code 10001: user cancelled)", 10001, tiktok
    )
    assert out["older"] == _sdk_failed(
        "TikTok's login failed (error_code 20: old SDK)", 20, {"errCode": "20", "errMsg": "old SDK"}
    )
    assert out["nothing"] == _sdk_failed("TikTok's login failed (no error_code)", None, "none")
    assert out["text"] == _sdk_failed("TikTok's login failed (boom)", None, "boom")
    assert out["thrown"]["code"] == "sdk_failed" and out["thrown"]["errorCode"] is None
    assert out["thrown"]["message"] == "TikTok's login failed (crashed)"
    assert out["noCode"]["code"] == "sdk_failed" and out["noCode"]["sdkError"] == {}

    assert out["timeout"]["code"] == "timeout" and "15 s" in out["timeout"]["message"]
    assert out["timeoutMs"] == out["ackTimeout"] == 15000
    assert out["wire"]["code"] == "rate_limited"
    assert out["wire"]["message"] == "Too many events."
    assert out["wire"]["ack"]["error"]["code"] == "rate_limited"
    for key in ("garbage", "incomplete", "noWireCode"):
        assert out[key]["isMinisError"] and out[key]["code"] == "internal_error", out[key]

    assert out["declinedConsent"] == "denied"
    assert out["declinedStatuses"] == [
        [
            "authorize_declined",
            10001,
            "sdk_failed",
            "TikTok's authorize failed (error_code 10001: user denied)",
        ]
    ]
    assert out["declinedSent"] == [["tiktok:authorize", {"granted": False}]]
    assert out["clientCodes"] == ["sdk_failed", "sdk_unavailable", "timeout", "no_socket_client"]
    assert out["frozen"] is True
    assert page.errors == []
