// The page at `/` in a real headless Chromium (Debian's; playwright-core downloads no browser):
// upload a video, see its thumbnail, ask, read the streamed answer; the answer survives a reload.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { chromium } from "playwright-core";

import { cliAnswer, MAX_TOKENS, URL, VIDEO } from "./common.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.resolve(import.meta.dirname, "../../target/serve-page");
const DEFAULT_QUESTION = "Describe what happens in this video.";

test("upload, thumbnail, ask, streamed answer, reload", async () => {
  const expected = cliAnswer(DEFAULT_QUESTION, MAX_TOKENS);
  mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    // A phone's width.
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e));
    await page.goto(URL + "/");
    await page.setInputFiles("#file", VIDEO);
    const card = page.locator(".card").first();
    // The thumbnail shows once the upload is probed.
    await card.locator("img.thumb[src^='blob:']").waitFor({ timeout: 60_000 });
    const size = await card.locator("img.thumb").evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    assert.ok(size[0] > 0 && size[1] > 0, `thumbnail decoded: ${size}`);
    await card.locator("img.board[src^='blob:']").waitFor();
    assert.equal(await card.locator("input[name=question]").inputValue(), DEFAULT_QUESTION);

    // Watch the answer grow: more than one distinct partial text means it streamed.
    const answer = card.locator(".analysis .answer").first();
    await card.locator("button[type=submit]").click();
    await answer.waitFor();
    const seen = new Set();
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      seen.add(await answer.textContent());
      const state = await card.locator(".analysis .state").first().textContent();
      if (state.endsWith("tokens")) break;
      await page.waitForTimeout(5);
    }
    assert.equal(await answer.textContent(), expected);
    assert.equal(await card.locator(".analysis .state").first().textContent(), `${MAX_TOKENS} tokens`);
    await page.screenshot({ path: path.join(SHOTS, "answered.png"), fullPage: true });

    // Reload: the upload and its answer are listed again.
    await page.reload();
    const again = page.locator(".card").first();
    await again.locator(".analysis .answer").first().waitFor();
    assert.equal(await again.locator(".analysis .answer").first().textContent(), expected);
    await again.locator("img.thumb[src^='blob:']").waitFor();
    await page.screenshot({ path: path.join(SHOTS, "reloaded.png"), fullPage: true });
    assert.deepEqual(errors, []);
    console.log(`partial answers seen while streaming: ${seen.size}`);
  } finally {
    await browser.close();
  }
});
