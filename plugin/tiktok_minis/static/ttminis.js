/* @ts-self-types="./ttminis.d.ts" */
/**
 * ttminis.js: the browser side of tiktok-minis, a small dependency-free ES module.
 *
 * It wraps a Socket.IO client (the global `io`, or one passed in) and TikTok's mini-game SDK
 * (`TTMinis`) and talks only to the game's own backend:
 *
 *   import { createMinis } from "/ttminis/static/ttminis.js";
 *   const minis = createMinis();                 // defaults: this origin, window.io, window.TTMinis
 *   minis.onPlayer((player) => render(player));  // the cached player at once, then every change
 *   await minis.login();                         // silent: TTMinis.game.login -> tiktok:login
 *   await minis.ensureProfile();                 // the consent popup, only when the game asks
 *   const stop = minis.join("global", ({ entries, me }) => draw(entries, me));
 *   await minis.submit("global", 1200);
 *
 * The player and the session are kept with the platform's storage API (TTMinis.game.*Storage*)
 * or localStorage: a returning player is shown at once, and a reconnect resumes the session
 * through the Socket.IO `auth` with no new code (TikTok's codes are single use).
 *
 * Types: ttminis.d.ts, next to this file (served at /ttminis/static/ttminis.d.ts), declares the
 * whole API for TypeScript. Copy both files into a bundled game; TypeScript picks the
 * declaration up for `import ... from "./ttminis.js"`.
 *
 * Errors. Every rejection (and the one synchronous throw, from createMinis) is a MinisError
 * with a `.code` to branch on; `.message` is for people. The codes are either
 *
 *   - a wire code, `error.code` of the server's failed ack, as docs/protocol.md lists them
 *     (`login_failed`, `rate_limited`, `upstream_unavailable`, ...; the ack is in `.ack`); an
 *     ack of the wrong shape is `internal_error`; or
 *   - a client code (CLIENT_CODES), raised here and never sent by the server:
 *       sdk_failed        TikTok's SDK called `fail` (TTMinis.game.login). `.errorCode` is
 *                         TikTok's error_code (a number, or null when it gave none), `.sdkError`
 *                         the raw object TikTok passed, `.message` reads "TikTok's login failed
 *                         (error_code 10001: ...)". Also when the login success carries no code.
 *       sdk_unavailable   no TikTok SDK (window.TTMinis missing, or without game.login /
 *                         game.authorize) when login() or ensureProfile() needs it.
 *       timeout           no ack within 15 s (ACK_TIMEOUT_MS); the server may still have acted.
 *       no_socket_client  thrown by createMinis when there is no Socket.IO client (window.io
 *                         or options.io).
 *
 * ensureProfile() has a soft path: a denial in TikTok's popup (the SDK's authorize `fail`) or
 * `not_authorized` resolves with the placeholder player, and the player is not asked again
 * after a denial. The SDK's error_code of a declined popup is reported through
 * onStatus("authorize_declined", {errorCode, error}) (error: the sdk_failed MinisError).
 */

const PLAYER_KEY = "ttminis.player";
const SESSION_KEY = "ttminis.session";
/** How long an ack may take before the call rejects with code `timeout`. */
export const ACK_TIMEOUT_MS = 15000;

/** The codes raised by ttminis.js itself (never by the server); see the top of this file. */
export const CLIENT_CODES = Object.freeze(["sdk_failed", "sdk_unavailable", "timeout", "no_socket_client"]);

/** The one error type ttminis.js rejects with: `.code` is a wire code or a client code. */
export class MinisError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{errorCode?: number | null, sdkError?: unknown, ack?: unknown, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, "cause" in details ? { cause: details.cause } : undefined);
    this.name = "MinisError";
    this.code = code;
    /** TikTok's error_code, for `sdk_failed`; null otherwise or when TikTok gave none. */
    this.errorCode = details.errorCode == null ? null : details.errorCode;
    if ("sdkError" in details) this.sdkError = details.sdkError;
    if ("ack" in details) this.ack = details.ack;
  }
}

/** Storage through the platform SDK when it has one, localStorage otherwise. */
function platformStorage(sdk) {
  const game = sdk && sdk.game;
  if (game && game.getStorageSync && game.setStorageSync) {
    return {
      get: (key) => {
        try {
          return game.getStorageSync(key);
        } catch (_) {
          return undefined;
        }
      },
      set: (key, value) => game.setStorageSync(key, value),
      remove: (key) => (game.removeStorageSync ? game.removeStorageSync(key) : game.setStorageSync(key, null)),
    };
  }
  return {
    get: (key) => {
      const raw = globalThis.localStorage && localStorage.getItem(key);
      return raw == null ? undefined : JSON.parse(raw);
    },
    set: (key, value) => localStorage.setItem(key, JSON.stringify(value)),
    remove: (key) => localStorage.removeItem(key),
  };
}

/** A number, a numeric string as a number, anything else null. */
function numberOrNull(value) {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) return Number(value);
  return null;
}

/**
 * The MinisError (`sdk_failed`) for what an SDK call's `fail` gave (or what it threw): TikTok's
 * {error: {error_code, error_msg, error_extra}}, the older {errCode | errNo, errMsg}, an Error,
 * a string, or nothing at all.
 */
function sdkFailure(what, raw) {
  let errorCode = null;
  let text = "";
  if (raw && typeof raw === "object") {
    const inner = raw.error && typeof raw.error === "object" ? raw.error : raw;
    errorCode = numberOrNull(inner.error_code ?? inner.errCode ?? inner.errNo ?? inner.code);
    const said = inner.error_msg ?? inner.errMsg ?? inner.message ?? (typeof raw.error === "string" ? raw.error : null);
    text = said == null ? "" : String(said);
  } else if (raw != null) {
    text = String(raw);
  }
  const why = [errorCode == null ? "" : `error_code ${errorCode}`, text].filter(Boolean).join(": ");
  return new MinisError("sdk_failed", `TikTok's ${what} failed (${why || "no error_code"})`, {
    errorCode,
    sdkError: raw,
  });
}

/** The code from an authorize success, in either documented shape. */
function authorizeCode(result) {
  if (!result) return undefined;
  return result.code || (result.authResponse && result.authResponse.code) || undefined;
}

/**
 * Create the client.
 * @param {object} [options]
 * @param {string} [options.url] the game backend (default: this page's origin)
 * @param {Function} [options.io] the Socket.IO client factory (default: window.io)
 * @param {object} [options.sdk] TikTok's SDK (default: window.TTMinis, looked up at each call)
 * @param {object} [options.storage] {get, set, remove} (default: the SDK's storage, or localStorage)
 * @param {string} [options.namespace] the Socket.IO namespace (default "/")
 * @throws {MinisError} `no_socket_client` when there is no Socket.IO client
 */
export function createMinis(options = {}) {
  const sdkOf = () => options.sdk || globalThis.TTMinis;
  const makeSocket = options.io || globalThis.io;
  if (typeof makeSocket !== "function") {
    throw new MinisError(
      "no_socket_client",
      "ttminis.js needs the Socket.IO client: load /ttminis/static/vendor/socket.io.min.js " +
        "before it (window.io), or pass createMinis({io})"
    );
  }
  const storage = options.storage || platformStorage(sdkOf());
  const url = (options.url || globalThis.location.origin) + (options.namespace || "/");

  let player = storage.get(PLAYER_KEY) || null;
  let session = storage.get(SESSION_KEY) || null;
  const playerListeners = new Set();
  const statusListeners = new Set();
  const boards = new Map(); // board -> {render, me}
  let loggingIn = null;

  const socket = makeSocket(url, {
    transports: ["websocket"],
    auth: (cb) => cb(session ? { session } : {}),
  });

  function setPlayer(next) {
    player = next;
    if (next) storage.set(PLAYER_KEY, next);
    else storage.remove(PLAYER_KEY);
    playerListeners.forEach((listener) => listener(next));
  }

  function setSession(next) {
    session = next;
    if (next) storage.set(SESSION_KEY, next);
    else storage.remove(SESSION_KEY);
  }

  function status(state, detail) {
    statusListeners.forEach((listener) => listener(state, detail));
  }

  /** TTMinis.game[name], bound; a MinisError (`sdk_unavailable`) when the SDK lacks it. */
  function sdkFunction(name) {
    const sdk = sdkOf();
    const game = sdk && sdk.game;
    if (!game || typeof game[name] !== "function") {
      throw new MinisError(
        "sdk_unavailable",
        `TikTok's SDK is not loaded (no TTMinis.game.${name}): run the game inside TikTok, ` +
          "or load /ttminis/static/sandbox-sdk.js on a sandbox server"
      );
    }
    return game[name].bind(game);
  }

  /** Call an SDK function with {success, fail} callbacks: a promise of what success gave. */
  function sdkCall(fn, what, params = {}) {
    return new Promise((resolve, reject) => {
      try {
        fn({ ...params, success: resolve, fail: (raw) => reject(sdkFailure(what, raw)) });
      } catch (raw) {
        reject(sdkFailure(what, raw));
      }
    });
  }

  /**
   * Send an event and wait for its ack: the ack when ok, else a MinisError with the wire code
   * (`internal_error` for an ack of the wrong shape, or one without the `fields` it must have),
   * or `timeout`.
   */
  async function request(event, payload = {}, fields = []) {
    let ack;
    try {
      ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch (cause) {
      throw new MinisError("timeout", `No answer to ${event} within ${ACK_TIMEOUT_MS / 1000} s`, { cause });
    }
    if (ack && ack.ok === true && fields.every((field) => ack[field] !== undefined)) return ack;
    const error = ack && ack.ok === false && ack.error;
    if (error && typeof error.code === "string" && error.code) {
      throw new MinisError(error.code, String(error.message || error.code), { ack });
    }
    throw new MinisError("internal_error", `The server's answer to ${event} is malformed`, { ack });
  }

  async function rejoinBoards() {
    for (const [board, state] of boards) {
      try {
        const ack = await request("leaderboard:join", { board }, ["entries"]);
        state.me = ack.me || null;
        state.render({ board, entries: ack.entries, me: state.me });
      } catch (error) {
        status("error", error);
      }
    }
  }

  socket.on("connect", async () => {
    status("connected", { resumed: Boolean(session) });
    if (session) {
      try {
        const ack = await request("tiktok:me");
        if (ack.player) setPlayer(ack.player);
      } catch (error) {
        status("error", error);
      }
    }
    await rejoinBoards();
  });
  socket.on("disconnect", (reason) => status("disconnected", { reason }));
  socket.on("connect_error", (error) => {
    if (error && error.data && error.data.code === "invalid_session") {
      // Expired or revoked: forget it; the next connect is anonymous, then log in again.
      setSession(null);
      status("session_refused", error);
      socket.connect();
      login().catch((failure) => status("error", failure));
    } else {
      status("reconnecting", error);
    }
  });
  socket.on("player:update", ({ player: next }) => setPlayer(next));
  socket.on("session:ended", ({ reason }) => {
    // Logged out everywhere from another device, or forgotten: this connection is a spectator
    // now. The game decides whether to log in again (login()) or show a logged-out screen.
    setSession(null);
    setPlayer(null);
    status("session_ended", { reason });
  });
  socket.on("leaderboard:update", ({ board, entries }) => {
    const state = boards.get(board);
    if (!state) return;
    if (player) {
      const mine = entries.find((entry) => entry.player.id === player.id);
      if (mine) state.me = mine;
    }
    state.render({ board, entries, me: state.me });
  });

  async function connected() {
    if (socket.connected) return;
    await new Promise((resolve) => socket.once("connect", resolve));
  }

  /** Silent login: TTMinis.game.login, then tiktok:login. Resolves with the player. */
  function login() {
    if (!loggingIn) {
      loggingIn = (async () => {
        const sdkLogin = sdkFunction("login");
        await connected(); // then the code: TikTok's codes are short-lived
        const result = await sdkCall(sdkLogin, "login");
        const code = result && result.code;
        if (typeof code !== "string" || !code) {
          throw new MinisError("sdk_failed", "TikTok's login gave no code", { sdkError: result });
        }
        const ack = await request("tiktok:login", { code }, ["player", "session"]);
        setSession(ack.session);
        setPlayer(ack.player);
        return ack.player;
      })().finally(() => {
        loggingIn = null;
      });
    }
    return loggingIn;
  }

  /**
   * Phased authorization: ask for the profile only now, when the game needs it.
   * Resolves with the player: named when granted, the placeholder when denied or not granted
   * (a declined popup is reported as onStatus("authorize_declined", {errorCode, error})).
   * A player who denied is not asked again, unless the player asked for it: {force: true}
   * (say, from a "show my name" button in the settings).
   */
  async function ensureProfile({ force = false } = {}) {
    if (!player) await login();
    if (!force && player.consent === "granted" && !player.placeholder) return player;
    if (!force && player.consent === "denied") return player;
    let payload;
    try {
      const result = await sdkCall(sdkFunction("authorize"), "authorize", { scope: "user.info.basic" });
      const code = authorizeCode(result);
      payload = code ? { granted: true, code } : { granted: true };
    } catch (error) {
      if (error.code !== "sdk_failed") throw error; // sdk_unavailable: nobody was asked
      status("authorize_declined", { errorCode: error.errorCode, error });
      payload = { granted: false };
    }
    try {
      const ack = await request("tiktok:authorize", payload, ["player"]);
      setPlayer(ack.player);
    } catch (error) {
      if (error.code !== "not_authorized") throw error;
      if (error.ack && error.ack.player) setPlayer(error.ack.player);
    }
    return player;
  }

  /**
   * Watch a board: render({board, entries, me}) now and on every update. Returns a function
   * that stops watching. Boards are rejoined after a reconnect. A failed join is reported
   * through onStatus("error", error).
   */
  function join(board, render) {
    const state = { render, me: null };
    boards.set(board, state);
    connected()
      .then(() => (boards.get(board) === state ? request("leaderboard:join", { board }, ["entries"]) : null))
      .then((ack) => {
        if (!ack || boards.get(board) !== state) return; // stopped meanwhile
        state.me = ack.me || null;
        render({ board, entries: ack.entries, me: state.me });
      })
      .catch((error) => status("error", error));
    return () => {
      if (boards.get(board) !== state) return;
      boards.delete(board);
      request("leaderboard:leave", { board }).catch(() => {});
    };
  }

  /** Submit a score (where the game allows client scores). Resolves with your entry. */
  async function submit(board, score) {
    const ack = await request("leaderboard:submit", { board, score }, ["me"]);
    const state = boards.get(board);
    if (state) state.me = ack.me;
    return ack.me;
  }

  /** Entries around you on a board (radius 1 to 50); [] when you have no score there. */
  async function around(board, radius = 5) {
    return (await request("leaderboard:around", { board, radius }, ["entries"])).entries;
  }

  /**
   * Log out and forget the stored session and profile. {everywhere: true} ends every session of
   * the player: their other devices get session:ended.
   */
  async function logout({ everywhere = false } = {}) {
    await request("tiktok:logout", { everywhere });
    setSession(null);
    setPlayer(null);
  }

  return {
    socket,
    get player() {
      return player;
    },
    get resumable() {
      return Boolean(session);
    },
    /** Call listener(player) with the cached player now and on every change. */
    onPlayer(listener) {
      playerListeners.add(listener);
      listener(player);
      return () => {
        playerListeners.delete(listener);
      };
    },
    /**
     * Call listener(state, detail) on connected ({resumed}) / disconnected ({reason}) /
     * reconnecting (the connect error) / error (a MinisError: a failed join, rejoin or
     * tiktok:me) / session_refused (the connect error) / session_ended ({reason: "logout" |
     * "forgotten"}) / authorize_declined ({errorCode, error}: TikTok's popup failed or was denied).
     */
    onStatus(listener) {
      statusListeners.add(listener);
      return () => {
        statusListeners.delete(listener);
      };
    },
    login,
    ensureProfile,
    join,
    submit,
    around,
    logout,
  };
}
