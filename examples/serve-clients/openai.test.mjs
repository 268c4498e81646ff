// `video-llava serve` through the official `openai` npm package.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import OpenAI from "openai";

import { cliAnswer, MODEL, URL, VIDEO } from "./common.mjs";

const QUESTION = "What happens in this video?";
const MAX = 8;
const client = new OpenAI({ baseURL: `${URL}/v1`, apiKey: "unused", maxRetries: 0 });
const messages = [{
  role: "user",
  content: [
    { type: "video_url", video_url: { url: `data:video/webm;base64,${readFileSync(VIDEO).toString("base64")}` } },
    { type: "text", text: QUESTION },
  ],
}];
const expected = cliAnswer(QUESTION, MAX);

test("models lists the loaded model", async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), [MODEL]);
});

test("a completion answers as the CLI does", async () => {
  assert.ok(expected.length > 0);
  const c = await client.chat.completions.create({ model: MODEL, messages, max_tokens: MAX, seed: 7 });
  assert.equal(c.object, "chat.completion");
  assert.equal(c.choices[0].message.content, expected);
  assert.equal(c.choices[0].finish_reason, "length");
  assert.equal(c.usage.completion_tokens, MAX);
});

test("a streamed completion answers as the CLI does", async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: MAX, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const text = chunks.filter((c) => c.choices.length).map((c) => c.choices[0].delta.content ?? "").join("");
  assert.equal(text, expected);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, MAX);
});

test("errors are the client's typed errors", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages, max_tokens: 4, n: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "n",
  );
  await assert.rejects(
    client.chat.completions.create({ model: "not-this-one", messages, max_tokens: 4 }),
    (e) => e instanceof OpenAI.NotFoundError,
  );
});
