// A game's use of ttminis.js, as TypeScript sees it: tests/test_typescript.py compiles this with
// `tsc --strict --noEmit` against plugin/tiktok_minis/static/ttminis.d.ts; it must pass.
import { io } from "socket.io-client";

import {
  ACK_TIMEOUT_MS,
  CLIENT_CODES,
  createMinis,
  MinisError,
  type BoardView,
  type ClientErrorCode,
  type Entry,
  type MinisErrorCode,
  type Player,
  type PublicPlayer,
} from "../../plugin/tiktok_minis/static/ttminis.js";

// In a page: window.io and window.TTMinis. From a bundler: socket.io-client's io.
const minis = createMinis();
const bundled = createMinis({ url: "https://game.example.com", io, namespace: "/" });
bundled.socket.emit("chat", "hello"); // the socket keeps socket.io-client's own type

const memory = new Map<string, unknown>();
createMinis({
  io,
  storage: {
    get: (key) => memory.get(key),
    set: (key, value) => void memory.set(key, value),
    remove: (key) => void memory.delete(key),
  },
  sdk: {
    game: {
      login: ({ success }) => success?.({ code: "one-time" }),
      authorize: ({ fail }) => fail?.({ error: { error_code: 10001, error_msg: "denied" } }),
    },
  },
});

function showPlayer(player: Player | null): string {
  if (!player) return "…";
  const shared: boolean = player.consent === "granted" && !player.placeholder;
  return `${player.display_name} (${player.id}, ${player.open_id}) ${player.avatar_url} ${shared}`;
}

const stopPlayer: () => void = minis.onPlayer((player) => showPlayer(player));
stopPlayer();

minis.onStatus((state, detail) => {
  switch (state) {
    case "connected":
      return detail.resumed ? "resumed" : "connected";
    case "disconnected":
      return detail.reason;
    case "session_ended":
      return detail.reason === "logout" || detail.reason === "forgotten";
    case "authorize_declined":
      return detail.errorCode === 10001 && detail.error.code === "sdk_failed";
    case "error":
      return detail.code;
    case "reconnecting":
    case "session_refused":
      return detail.message;
  }
});

minis.onStatus((state) => console.log(state === "session_ended")); // the detail may be left out

/** What a game does with each code: every code is handled (the `never` check). */
function advice(code: MinisErrorCode): string {
  switch (code) {
    case "sdk_failed":
    case "sdk_unavailable":
    case "no_socket_client":
      return "TikTok's side";
    case "timeout":
    case "upstream_unavailable":
    case "storage_unavailable":
    case "rate_limited":
      return "retry later";
    case "login_failed":
    case "not_logged_in":
      return "log in again";
    case "not_authorized":
      return "keep the placeholder";
    case "invalid_payload":
    case "unknown_board":
    case "score_rejected":
    case "internal_error":
      return "a bug";
    default: {
      const unhandled: never = code;
      return unhandled;
    }
  }
}

function describe(error: unknown): string {
  if (!(error instanceof MinisError)) return String(error);
  if (error.code === "sdk_failed") {
    const tiktok: number | null = error.errorCode;
    return `${error.message} [${tiktok ?? "no error_code"}] ${JSON.stringify(error.sdkError)}`;
  }
  const fromClient = (CLIENT_CODES as readonly string[]).includes(error.code);
  return `${error.name} ${error.code} ${fromClient} ${advice(error.code)} ${String(error.ack)}`;
}

function draw({ board, entries, me }: BoardView): void {
  const rows = entries.map((entry: Entry) => {
    const who: PublicPlayer = entry.player;
    return `${entry.rank}. ${who.display_name} ${entry.score} ${who.placeholder}`;
  });
  console.log(board, rows, me?.rank ?? "no score");
}

async function play(): Promise<void> {
  try {
    const player: Player = await minis.login();
    showPlayer(player);
  } catch (error) {
    console.log(describe(error));
  }
  const named: Player = await minis.ensureProfile();
  await minis.ensureProfile({ force: named.consent === "denied" });
  const stop: () => void = minis.join("global", draw);
  const me: Entry = await minis.submit("global", 1200);
  const near: Entry[] = await minis.around("global", 1);
  console.log(me.rank, near.length, minis.player?.display_name, minis.resumable, ACK_TIMEOUT_MS);
  stop();
  await minis.logout({ everywhere: true });
  await minis.logout();
}

try {
  createMinis({ io: undefined });
} catch (error) {
  if (error instanceof MinisError && error.code === "no_socket_client") console.log(error.message);
}

const clientCode: ClientErrorCode = CLIENT_CODES[0];
console.log(clientCode, new MinisError("timeout", "no answer").errorCode);
void play();
