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
 * Every failed ack rejects with an Error carrying `.code` (the wire code, see PROTOCOL.md),
 * except the soft paths of ensureProfile(): a denial or a missing scope resolves with the
 * placeholder player, and the player is not asked again after a denial.
 */

const PLAYER_KEY = "ttminis.player";
const SESSION_KEY = "ttminis.session";
const ACK_TIMEOUT_MS = 15000;

/** An Error with the wire code of a failed ack. */
export class MinisError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "MinisError";
    this.code = code;
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

/** Call an SDK function with {success, fail} callbacks as a promise. */
function sdkCall(fn, options = {}) {
  return new Promise((resolve, reject) => fn({ ...options, success: resolve, fail: reject }));
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
 * @param {object} [options.sdk] TikTok's SDK (default: window.TTMinis)
 * @param {object} [options.storage] {get, set, remove} (default: the SDK's storage, or localStorage)
 * @param {string} [options.namespace] the Socket.IO namespace (default "/")
 */
export function createMinis(options = {}) {
  const sdk = options.sdk || globalThis.TTMinis;
  const makeSocket = options.io || globalThis.io;
  if (!makeSocket) throw new Error("ttminis.js needs the Socket.IO client (window.io)");
  const storage = options.storage || platformStorage(sdk);
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

  async function request(event, payload = {}) {
    const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    if (!ack || ack.ok !== true) {
      const error = (ack && ack.error) || { code: "internal_error", message: "no answer" };
      const failure = new MinisError(error.code, error.message);
      failure.ack = ack;
      throw failure;
    }
    return ack;
  }

  async function rejoinBoards() {
    for (const [board, state] of boards) {
      try {
        const ack = await request("leaderboard:join", { board });
        state.me = ack.me;
        state.render({ board, entries: ack.entries, me: ack.me });
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
        await connected();
        const { code } = await sdkCall(sdk.game.login);
        const ack = await request("tiktok:login", { code });
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
   * Resolves with the player: named when granted, the placeholder when denied or not granted.
   * A player who denied is not asked again, unless the player asked for it: {force: true}
   * (say, from a "show my name" button in the settings).
   */
  async function ensureProfile({ force = false } = {}) {
    if (!player) await login();
    if (!force && player.consent === "granted" && !player.placeholder) return player;
    if (!force && player.consent === "denied") return player;
    let payload;
    try {
      const result = await sdkCall(sdk.game.authorize, { scope: "user.info.basic" });
      const code = authorizeCode(result);
      payload = code ? { granted: true, code } : { granted: true };
    } catch (_) {
      payload = { granted: false };
    }
    try {
      const ack = await request("tiktok:authorize", payload);
      setPlayer(ack.player);
    } catch (error) {
      if (error.code !== "not_authorized") throw error;
      if (error.ack && error.ack.player) setPlayer(error.ack.player);
    }
    return player;
  }

  /**
   * Watch a board: render({board, entries, me}) now and on every update. Returns a function
   * that stops watching. Boards are rejoined after a reconnect.
   */
  function join(board, render) {
    const state = { render, me: null };
    boards.set(board, state);
    connected()
      .then(() => request("leaderboard:join", { board }))
      .then((ack) => {
        state.me = ack.me;
        render({ board, entries: ack.entries, me: ack.me });
      })
      .catch((error) => status("error", error));
    return () => {
      if (boards.get(board) === state) boards.delete(board);
      request("leaderboard:leave", { board }).catch(() => {});
    };
  }

  /** Submit a score (where the game allows client scores). Resolves with your entry. */
  async function submit(board, score) {
    const ack = await request("leaderboard:submit", { board, score });
    const state = boards.get(board);
    if (state) state.me = ack.me;
    return ack.me;
  }

  /** Entries around you on a board. */
  async function around(board, radius = 5) {
    return (await request("leaderboard:around", { board, radius })).entries;
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
      return () => playerListeners.delete(listener);
    },
    /**
     * Call listener(state, detail) on connected / disconnected / reconnecting / error /
     * session_refused / session_ended ({reason: "logout" | "forgotten"}).
     */
    onStatus(listener) {
      statusListeners.add(listener);
      return () => statusListeners.delete(listener);
    },
    login,
    ensureProfile,
    join,
    submit,
    around,
    logout,
  };
}
