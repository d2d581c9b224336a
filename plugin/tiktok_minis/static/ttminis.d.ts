/**
 * Types for ttminis.js, the browser side of tiktok-minis (served next to it, at
 * /ttminis/static/ttminis.d.ts). Copy both files into a bundled game and import "./ttminis.js":
 * TypeScript reads this declaration for it.
 *
 * The shapes are the wire contract's (docs/protocol.md in the tiktok-minis repository): Player,
 * Entry, the error codes. Fields may be added in later versions; none is renamed or dropped.
 */

/** The error codes a server sends in a failed ack (docs/protocol.md, "Error codes"). */
export type WireErrorCode =
  | "invalid_payload"
  | "not_logged_in"
  | "login_failed"
  | "not_authorized"
  | "upstream_unavailable"
  | "storage_unavailable"
  | "unknown_board"
  | "score_rejected"
  | "rate_limited"
  | "internal_error";

/**
 * The codes ttminis.js raises itself, never sent by the server:
 * - `sdk_failed`: TikTok's SDK called `fail` (login), or its success carried no code;
 *   `errorCode` and `sdkError` say what TikTok gave;
 * - `sdk_unavailable`: no TikTok SDK (window.TTMinis, or its game.login / game.authorize) when
 *   login() or ensureProfile() needs it;
 * - `timeout`: no ack within ACK_TIMEOUT_MS (15 s);
 * - `no_socket_client`: thrown by createMinis without a Socket.IO client.
 */
export type ClientErrorCode = "sdk_failed" | "sdk_unavailable" | "timeout" | "no_socket_client";

/** Every `MinisError.code`. */
export type MinisErrorCode = WireErrorCode | ClientErrorCode;

/** The client codes, for a game that tells them from wire codes at run time. */
export declare const CLIENT_CODES: readonly ClientErrorCode[];

/** How long an ack may take (milliseconds) before the call rejects with `timeout`. */
export declare const ACK_TIMEOUT_MS: number;

/** A failed ack as the server sent it (a `not_authorized` one also carries the placeholder). */
export interface FailedAck {
  ok: false;
  error: { code: string; message: string };
  player?: Player;
  [field: string]: unknown;
}

/** What ttminis.js rejects with (and what createMinis throws): branch on `code`. */
export declare class MinisError extends Error {
  constructor(
    code: MinisErrorCode,
    message: string,
    details?: { errorCode?: number | null; sdkError?: unknown; ack?: unknown; cause?: unknown },
  );
  name: "MinisError";
  code: MinisErrorCode;
  /** TikTok's `error_code`, for `sdk_failed`; null otherwise, or when TikTok gave none. */
  errorCode: number | null;
  /** For `sdk_failed`: exactly what TikTok's SDK passed to `fail` (or threw). */
  sdkError?: unknown;
  /** For a wire code: the failed ack (for `internal_error`, whatever came back). */
  ack?: unknown;
}

/** `unknown`: never asked, or the grant was revoked; `denied`: do not prompt on your own. */
export type Consent = "unknown" | "granted" | "denied";

/** The player, as sent only to their own connections. */
export interface Player {
  /** A stable public id, never the open_id. */
  id: string;
  open_id: string;
  display_name: string;
  /** The server's own copy or the default avatar; fall back to the default avatar on error. */
  avatar_url: string;
  /** True without a profile: the placeholder name and the default avatar. */
  placeholder: boolean;
  consent: Consent;
}

/** A player as every client may see them on a board. */
export interface PublicPlayer {
  id: string;
  display_name: string;
  avatar_url: string;
  placeholder: boolean;
}

/** A board entry. Ranks start at 1; scores are signed 64-bit integers on the wire. */
export interface Entry {
  rank: number;
  score: number;
  player: PublicPlayer;
}

/** What a join's render gets, now and on every update. `me` is null for a spectator or
 * a player without a score on the board. */
export interface BoardView {
  board: string;
  entries: Entry[];
  me: Entry | null;
}

/** The detail that comes with each status state. */
export interface StatusDetails {
  connected: { resumed: boolean };
  disconnected: { reason: string };
  /** The connect error; the Socket.IO client retries by itself. */
  reconnecting: Error & { data?: unknown };
  /** A failed join, rejoin or tiktok:me. */
  error: MinisError;
  /** The stored session was refused (invalid_session): dropped, logging in again silently. */
  session_refused: Error & { data?: unknown };
  /** Logged out everywhere from another device, or forgotten: this connection is a spectator. */
  session_ended: { reason: "logout" | "forgotten" };
  /** TikTok's authorize popup was denied or failed; ensureProfile() resolves with the placeholder. */
  authorize_declined: { errorCode: number | null; error: MinisError };
}

export type StatusState = keyof StatusDetails;

/** `[state, detail]` pairs: a listener `(state, detail) => ...` narrows detail by state. */
export type StatusEvent = { [S in StatusState]: [state: S, detail: StatusDetails[S]] }[StatusState];

export type StatusListener = (...event: StatusEvent) => void;
export type PlayerListener = (player: Player | null) => void;
export type BoardRender = (view: BoardView) => void;

/** The storage ttminis.js keeps the player and session in (values are JSON-able). */
export interface MinisStorage {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  remove(key: string): void;
}

/** The {success, fail} callbacks of TikTok's SDK calls. */
export interface SdkCallOptions<T> {
  success?: (result: T) => void;
  fail?: (error: unknown) => void;
  complete?: (result: unknown) => void;
}

/** The part of TikTok's SDK (window.TTMinis) ttminis.js uses. */
export interface MinisSdk {
  game?: {
    login?: (options: SdkCallOptions<{ code: string }>) => void;
    authorize?: (
      options: SdkCallOptions<{ code?: string; authResponse?: { code?: string } } | undefined> & {
        scope: string;
      },
    ) => void;
    getStorageSync?: (key: string) => unknown;
    setStorageSync?: (key: string, data: unknown) => void;
    removeStorageSync?: (key: string) => void;
  };
}

/** The options ttminis.js creates its socket with. */
export interface MinisSocketOptions {
  transports: "websocket"[];
  auth: (cb: (data: { session?: string }) => void) => void;
}

/** The part of a Socket.IO 4 client socket ttminis.js uses (socket.io-client's Socket fits). */
export interface MinisSocket {
  readonly connected: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  connect(): unknown;
  timeout(ms: number): { emitWithAck(event: string, ...args: any[]): Promise<any> };
}

export interface MinisOptions<S extends MinisSocket = MinisSocket> {
  /** The game backend (default: this page's origin). */
  url?: string;
  /** The Socket.IO client factory, e.g. socket.io-client's `io` (default: window.io). */
  io?: (url: string, options: MinisSocketOptions) => S;
  /** TikTok's SDK (default: window.TTMinis, looked up at each call). */
  sdk?: MinisSdk;
  /** Where the player and session are kept (default: the SDK's storage, or localStorage). */
  storage?: MinisStorage;
  /** The Socket.IO namespace (default "/"). */
  namespace?: string;
}

export interface Minis<S extends MinisSocket = MinisSocket> {
  /** The Socket.IO socket, for the game's own events. */
  readonly socket: S;
  /** The current (or cached) player; null before a first login or after a logout. */
  readonly player: Player | null;
  /** Whether a stored session will resume on the next connect. */
  readonly resumable: boolean;
  /** Calls listener with the cached player now and on every change; returns the unsubscribe. */
  onPlayer(listener: PlayerListener): () => void;
  /** Calls listener(state, detail) on each status change; returns the unsubscribe. */
  onStatus(listener: StatusListener): () => void;
  onStatus(listener: (state: StatusState) => void): () => void;
  /** Silent login (TTMinis.game.login, then tiktok:login); concurrent calls share one. */
  login(): Promise<Player>;
  /**
   * Asks for the profile (TikTok's popup) when not granted yet: the named player when granted,
   * the placeholder when denied or not granted. A denial is not asked again unless `force`.
   */
  ensureProfile(options?: { force?: boolean }): Promise<Player>;
  /** Watches a board: render now and on every update; returns the function that stops. */
  join(board: string, render: BoardRender): () => void;
  /** Submits a score (boards with client scores); resolves with your entry. */
  submit(board: string, score: number): Promise<Entry>;
  /** The entries around you (radius 1 to 50, default 5); [] without a score on the board. */
  around(board: string, radius?: number): Promise<Entry[]>;
  /** Ends this session ({everywhere: true}: every session of the player) and forgets it. */
  logout(options?: { everywhere?: boolean }): Promise<void>;
}

/**
 * Creates the client: connects at once, and calls TikTok's SDK only from login() and
 * ensureProfile().
 * @throws MinisError `no_socket_client` without a Socket.IO client.
 */
export declare function createMinis<S extends MinisSocket = MinisSocket>(
  options?: MinisOptions<S>,
): Minis<S>;
