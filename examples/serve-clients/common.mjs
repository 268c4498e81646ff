// What the tests share: the server test.sh started, and the CLI's answer for comparison.
import { execFileSync } from "node:child_process";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through test.sh`);
  return value;
}

export const URL = env("VIDEO_LLAVA_URL");
export const MODEL = env("VIDEO_LLAVA_MODEL");
export const BIN = env("VIDEO_LLAVA_BIN");
export const VIDEO = env("VIDEO_LLAVA_VIDEO");
export const MAX_TOKENS = Number(env("VIDEO_LLAVA_MAX_TOKENS"));

/** The CLI's answer for `question` about VIDEO in `maxTokens` tokens. */
export function cliAnswer(question, maxTokens = MAX_TOKENS) {
  const out = execFileSync(BIN, [
    "analyze", "--json", "--device", "cpu", "--model", MODEL,
    "--question", question, "--max-new-tokens", String(maxTokens), VIDEO,
  ], { env: { ...process.env, HF_HUB_OFFLINE: "1" } });
  return JSON.parse(out.toString()).answer;
}
