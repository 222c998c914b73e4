// Every *.test.mjs in one process with one Chromium (helpers.mjs shareBrowser), two files
// at a time, each as a suite of its own (its before/after hooks, its own server and
// database). The longest files go first, so that the two lanes end together.
// A file still runs on its own: node --experimental-websocket --test ui.test.mjs
import { describe, before, after } from "node:test";
import { readdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { shareBrowser } from "./helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const FIRST = ["delivery.test.mjs", "layout.test.mjs"];
const files = readdirSync(here).filter((f) => f.endsWith(".test.mjs")).sort()
  .sort((a, b) => (FIRST.includes(b) ? 1 : 0) - (FIRST.includes(a) ? 1 : 0));

let closeBrowser;
before(() => { closeBrowser = shareBrowser(); });
after(() => closeBrowser?.());

describe("browser tests", { concurrency: Number(process.env.BROWSER_TEST_CONCURRENCY || 2) }, () => {
  // Within a file, one test at a time (they share its server, in order).
  for (const f of files) describe(f, { concurrency: 1 }, async () => { await import("./" + f); });
});
