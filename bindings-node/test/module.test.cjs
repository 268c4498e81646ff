// The package loads from CommonJS (by name and by directory) and from ESM, as one module instance.
const assert = require('node:assert/strict')
const { describe, it } = require('node:test')
const path = require('node:path')

const API = ['probe', 'sampleFrames', 'thumbnail', 'storyboard', 'Video', 'VideoLlava']

describe('module loading', () => {
  it('require() of the package name and of the package directory give the whole API', () => {
    const byName = require('video-llava')
    const byDir = require(path.resolve(__dirname, '..'))
    assert.equal(byName, byDir)
    for (const name of API) assert.equal(typeof byName[name], 'function', name)
    assert.equal(typeof byName.VideoLlava.fromPretrained, 'function')
  })

  it('import() gives the same functions as require()', async () => {
    const esm = await import('video-llava')
    const cjs = require('video-llava')
    for (const name of API) assert.equal(esm[name], cjs[name], name)
    assert.equal(esm.default, cjs)
    // Every export the generated index.d.ts declares is there at run time, in both module systems.
    const dts = require('node:fs').readFileSync(path.resolve(__dirname, '..', 'index.d.ts'), 'utf8')
    const declared = [...dts.matchAll(/^export declare (?:function|class|const) (\w+)/gm)].map((m) => m[1])
    assert.ok(declared.length >= API.length + 1, `declared: ${declared}`)
    for (const name of declared) {
      assert.notEqual(cjs[name], undefined, `require: ${name}`)
      assert.notEqual(esm[name], undefined, `import: ${name}`)
    }
  })

  it('VideoLlava cannot be constructed directly (use fromPretrained)', () => {
    const { VideoLlava } = require('video-llava')
    assert.throws(() => new VideoLlava())
  })

  it('Video cannot be constructed directly (use Video.open)', () => {
    const { Video } = require('video-llava')
    assert.throws(() => new Video())
    assert.equal(typeof Video.open, 'function')
  })

  it('calls that decode return promises', () => {
    const { probe } = require('video-llava')
    const pending = probe('/nonexistent.mp4')
    assert.ok(pending instanceof Promise)
    return pending.then(
      () => assert.fail('probe of a missing file resolved'),
      (err) => assert.equal(err.code, 'ENOENT'),
    )
  })
})
