// The demo game: a stand-in for a TikTok mini game built on ttminis.js.
import { createMinis } from "/ttminis/static/ttminis.js";

const DEFAULT_AVATAR = "/ttminis/static/default-avatar.svg";
const $ = (id) => document.getElementById(id);

const minis = createMinis();
let height = 0;
let best = 0;
let stopWatching = null;

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

function showError(error) {
  $("last-error").textContent = error ? `${error.code || "error"}: ${error.message}` : "";
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
  if (me) best = Math.max(best, me.score);
  $("best").textContent = best;
}

async function openBoard() {
  $("board").hidden = false;
  // The phased-authorization moment: ask for the profile only when names matter.
  try {
    await minis.ensureProfile();
  } catch (error) {
    showError(error);
  }
  if (!stopWatching) stopWatching = minis.join("global", renderBoard);
}

async function tap() {
  height += 1 + Math.floor(Math.random() * 3);
  $("score").textContent = height;
  if (height <= best) return;
  try {
    const me = await minis.submit("global", height);
    best = Math.max(best, me.score);
    $("best").textContent = best;
  } catch (error) {
    showError(error);
  }
}

minis.onPlayer(showPlayer); // the cached profile first: no blank frame for a returning player
minis.onStatus((state, detail) => {
  $("status").textContent = state === "connected" && detail && detail.resumed ? "resumed" : state;
  $("status").dataset.state = state;
  if (state === "error") showError(detail);
});

$("tap").addEventListener("click", tap);
$("open-board").addEventListener("click", openBoard);
$("close-board").addEventListener("click", () => {
  $("board").hidden = true;
  if (stopWatching) stopWatching();
  stopWatching = null;
});
$("rename-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await TTMinisSandbox.rename($("rename").value);
    $("rename").value = "";
    showError(null);
  } catch (error) {
    showError(error);
  }
});
$("reauthorize").addEventListener("click", () => minis.ensureProfile({ force: true }).catch(showError));
$("revoke").addEventListener("click", () => TTMinisSandbox.revoke().catch(showError));
$("new-player").addEventListener("click", async () => {
  TTMinisSandbox.newDevice();
  location.reload();
});

minis.login().catch(showError);
