// Deliberate misuse: tests/test_typescript.py expects `tsc --strict --noEmit` to report exactly
// the error named at the end of each marked line (`// error TSnnnn`), and nothing else.
import { createMinis, MinisError, type Entry } from "../../plugin/tiktok_minis/static/ttminis.js";

const minis = createMinis({ url: 8080 }); // error TS2322
createMinis({ io: () => ({ connected: true }) }); // error TS2322
void minis.submit("global", "1200"); // error TS2345
void minis.around("global", "5"); // error TS2345
void minis.ensureProfile({ again: true }); // error TS2353
minis.join("global", (view) => view.entries[0].player.open_id); // error TS2339
minis.onStatus((state) => void (state === "conected")); // error TS2367
minis.onStatus((state, detail) => void (state === "connected" && detail.reason)); // error TS2339

function handle(error: MinisError): string {
  if (error.code === "sdk_failure") return "no such code"; // error TS2367
  if (error.code === "invalid_session") return "a connect_error, never a rejection"; // error TS2367
  const tiktok: string = error.errorCode; // error TS2322
  return tiktok;
}

async function score(): Promise<number> {
  const me: Entry = await minis.submit("global", 1);
  return me.player.consent === "granted" ? 1 : 0; // error TS2339
}

new MinisError("sdk_broke", "unknown code"); // error TS2345
minis.player = null; // error TS2540
console.log(handle, score);
