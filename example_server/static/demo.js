// The demo game: a stand-in for a TikTok mini game built on ttminis.js.
import { createMinis } from "/ttminis/static/ttminis.js";

const DEFAULT_AVATAR = "/ttminis/static/default-avatar.svg";
const BOARD = "global";
const $ = (id) => document.getElementById(id);

const minis = createMinis();
let height = 0;
let best = 0;
let stopWatching = null;
let boardClosed = false; // the player closed the board: a new score does not reopen it

function setAvatar(img, url) {
  img.onerror = () => {
    img.onerror = null;
    img.src = DEFAULT_AVATAR;
  };
  img.src = url || DEFAULT_AVATAR;
}

function showPlayer(player) {
  $("me-name").textContent = player ? player.display_name : "…";
  setAvatar($("me-avatar"), player && player.avatar_url);
  const consent = player ? player.consent : "unknown";
  $("me-consent").textContent =
    consent === "granted" ? "profile shared" : consent === "denied" ? "profile private" : "tap Leaderboard to show your name";
}

/** Show a MinisError ("code: message"), or clear the line with null after a success. */
function showError(error, suffix = "") {
  $("last-error").textContent = error ? `${error.code || "error"}: ${error.message}${suffix}` : "";
}

function showBest(score) {
  best = Math.max(best, score);
  $("best").textContent = best;
}

function entryRow(entry, mine) {
  const li = document.createElement("li");
  li.className = mine ? "entry mine" : "entry";
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = entry.rank;
  const img = document.createElement("img");
  img.className = "avatar small";
  img.alt = "";
  setAvatar(img, entry.player.avatar_url);
  const name = document.createElement("span");
  name.className = entry.player.placeholder ? "entry-name placeholder" : "entry-name";
  name.textContent = entry.player.display_name;
  const score = document.createElement("span");
  score.className = "entry-score";
  score.textContent = entry.score;
  li.append(rank, img, name, score);
  return li;
}

function renderBoard({ entries, me }) {
  const myId = minis.player && minis.player.id;
  $("entries").replaceChildren(...entries.map((e) => entryRow(e, e.player.id === myId)));
  const shown = entries.some((e) => e.player.id === myId);
  $("my-entry").hidden = !me || shown;
  if (me && !shown) $("my-entry").replaceChildren(entryRow(me, true));
  if (me) showBest(me.score);
}

/** Show the board and follow it live. Joining asks for nothing: names show as they are. */
function watchBoard() {
  $("board").hidden = false;
  if (!stopWatching) stopWatching = minis.join(BOARD, renderBoard);
}

async function askForProfile(options) {
  try {
    await minis.ensureProfile(options);
    showError(null);
  } catch (error) {
    showError(error);
  }
}

async function openBoard() {
  boardClosed = false;
  watchBoard();
  // The phased-authorization moment: ask for the profile only when names matter.
  await askForProfile();
}

async function tap() {
  height += 1 + Math.floor(Math.random() * 3);
  $("score").textContent = height;
  if (height <= best) return;
  try {
    showBest((await minis.submit(BOARD, height)).score);
    showError(null);
    if (!boardClosed) watchBoard(); // you are on the board now: watch it live
  } catch (error) {
    showError(error);
  }
}

/** Silent login, retried with a backoff (1 s, 2 s, 4 s ... at most 30 s) until it works. */
async function logIn() {
  for (let delay = 1000; ; delay = Math.min(2 * delay, 30000)) {
    try {
      await minis.login();
      showError(null);
      return;
    } catch (error) {
      showError(error, ` (retrying in ${delay / 1000} s)`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** Your best from the server (after a reload, say): your entry, if you have one. */
async function loadBest() {
  try {
    const mine = (await minis.around(BOARD, 1)).find((e) => e.player.id === minis.player.id);
    if (mine) {
      showBest(mine.score);
      if (!boardClosed) watchBoard();
    }
  } catch (error) {
    showError(error);
  }
}

minis.onPlayer(showPlayer); // the cached profile first: no blank frame for a returning player
minis.onStatus((state, detail) => {
  if (state === "error") showError(detail);
  if (!["connected", "disconnected", "reconnecting"].includes(state)) return;
  $("status").textContent = state === "connected" && detail.resumed ? "resumed" : state;
  $("status").dataset.state = state;
});

$("tap").addEventListener("click", tap);
$("open-board").addEventListener("click", openBoard);
$("close-board").addEventListener("click", () => {
  boardClosed = true;
  $("board").hidden = true;
  if (stopWatching) stopWatching();
  stopWatching = null;
});
$("rename-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const profile = await TTMinisSandbox.rename($("rename").value);
    $("rename").value = "";
    showError(null);
    $("rename-text").textContent =
      `Renamed to "${profile.display_name}" on TikTok. The game shows it at its next profile fetch.`;
    $("rename-note").hidden = false;
  } catch (error) {
    showError(error);
  }
});
$("fetch-profile").addEventListener("click", () => {
  $("rename-note").hidden = true;
  askForProfile({ force: true });
});
$("reauthorize").addEventListener("click", () => askForProfile({ force: true }));
$("revoke").addEventListener("click", () => TTMinisSandbox.revoke().then(() => showError(null), showError));
$("new-player").addEventListener("click", () => {
  TTMinisSandbox.newDevice();
  location.reload();
});

logIn().then(loadBest);
