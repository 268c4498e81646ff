// Type-checked (never run) by `tsc --noEmit -p .`: the whole API, as a TypeScript user writes it,
// against the generated index.d.ts. A wrong name or shape in the d.ts fails the test suite.
import { readFileSync } from 'node:fs'

import {
  probe,
  sampleFrames,
  storyboard,
  thumbnail,
  Video,
  VideoLlava,
  type BatchOptions,
  type Conversation,
  type FrameBatch,
  type Generation,
  type GenerateOptions,
  type Thumbnail,
  type TokenStream,
  type VideoInfo,
} from 'video-llava'

async function main(): Promise<void> {
  const path: string = 'clip.mp4'
  const bytes: Buffer = readFileSync(path)

  const info: VideoInfo = await probe(path)
  const widthHeight: [number, number] = [info.width, info.height]
  const facts: [number, number, number, number, boolean, string, string] = [
    info.rotation, info.fps, info.duration, info.frameCount, info.hasAudio, info.codec, info.container,
  ]
  await probe(new Uint8Array(bytes))

  const batch: FrameBatch = await sampleFrames(bytes, {
    numFrames: 8,
    sampling: 'uniform',
    seek: 'exact',
    resize: { shortestSide: 224 },
    rotate: true,
  })
  const frames: Buffer = batch.frames
  const meta: [number, number, number, number[], number[], boolean] = [
    batch.width, batch.height, batch.count, batch.indices, batch.timestamps, batch.clamped,
  ]
  await sampleFrames(path, { indices: [0, 10], seek: 'fast', resize: { width: 64, height: 48 } })
  await sampleFrames(path, { timestamps: [0.5], maxBytes: 1 << 20, threads: 2 })
  await sampleFrames(path, { every: 1, sampling: 'linspace' })

  const thumb: Thumbnail = await thumbnail(path, { maxSize: 320, format: 'jpeg', quality: 90 })
  const encoded: [Buffer, number, number, number, 'jpeg' | 'png' | 'webp'] = [
    thumb.data, thumb.timestamp, thumb.width, thumb.height, thumb.format,
  ]
  const board: Thumbnail[] = await storyboard(path, 4, { format: 'webp' })

  const handle: Video = await Video.open(bytes)
  const handleInfo: VideoInfo = await handle.info()
  const handleBatch: FrameBatch = await handle.sample({ numFrames: 4, seek: 'fast' })
  const handleThumb: Thumbnail = await handle.thumbnail({ maxSize: 160 })
  const handleBoard: Thumbnail[] = await handle.storyboard(3, { format: 'png' })
  handle.close()
  const closed: boolean = handle.closed

  const model: VideoLlava = await VideoLlava.fromPretrained('LanguageBind/Video-LLaVA-7B-hf', {
    device: 'cpu',
    dtype: 'float32',
    quantize: 'q4k',
    quantizeVision: true,
  })
  const quantized: ['none' | 'q8_0' | 'q4k' | 'q6k', boolean, string[]] = [
    model.quantization, model.visionQuantized, model.quantizationFallbacks,
  ]
  const ggufPath: string = await model.saveQuantized('video-llava-7b-q4k')
  const controller = new AbortController()
  const options: GenerateOptions = {
    prompt: 'Why is this video funny?',
    video: path,
    image: bytes,
    maxNewTokens: 64,
    temperature: 0.7,
    topP: 0.9,
    topK: 40,
    seed: 1,
    stop: ['\n'],
    signal: controller.signal,
    onToken: (piece: string) => process.stdout.write(piece),
  }
  const out: Generation = await model.generate(options)
  const result: [string, number[], number, string] = [out.text, out.tokenIds, out.promptTokens, out.stopReason]
  const seconds: number = out.timings.prefill + out.timings.decode + out.timings.vision + out.timings.preprocess
  await model.generate({ prompt: 'Describe it.', video: batch, videoOptions: undefined })
  await model.generate({ prompt: 'And this?', images: [path, { data: frames, width: 4, height: 4 }], stop: 'END' })
  await model.generate({ prompt: 'More?', video: bytes, videoOptions: { numFrames: 8, sampling: 'linspace' } })
  await model.generate({ prompt: 'Then?', history: [{ question: 'What?', answer: 'A bike.' }], video: path })

  const stream: TokenStream = model.stream({ prompt: 'Why is this video funny?', video: path })
  for await (const piece of stream) {
    const text: string = piece
    process.stdout.write(text)
  }
  const streamed: Generation | null = stream.result

  const conversation: Conversation = await model.conversation({ video: path, videoOptions: { numFrames: 8 } })
  const asked: Generation = await conversation.generate({ prompt: 'Give it a title.', maxNewTokens: 16 })
  const cached: number = asked.cachedTokens + conversation.prefixTokens + conversation.prefixBytes
  const turn: Generation = await conversation.chat({ prompt: 'What happens first?', seed: 1, temperature: 0.7 })
  const turns: Array<{ question: string; answer: string }> = conversation.history
  for await (const piece of conversation.stream({ prompt: 'And then?' })) process.stdout.write(piece)
  conversation.close()
  const conversationClosed: boolean = conversation.closed

  const batchOptions: BatchOptions = { maxBatch: 4, maxKvBytes: 1 << 30 }
  const answers: Generation[] = await model.generateBatch(
    [{ prompt: 'Give it a title.', video: path }, { prompt: 'Why?', onToken: (p: string) => p.length }],
    batchOptions,
  )
  const answered: number = answers.length + conversationClosed.toString().length

  const ids: number[] = await model.tokenize('USER: <video>\nWhy? ASSISTANT:', 8)
  const generated: number[] = await model.generateIds(Uint32Array.from(ids), {
    pixelValuesVideos: new Float32Array(8 * 3 * 224 * 224),
    maxNewTokens: 16,
  })
  const logits: Float32Array = await model.logits(Uint32Array.from(ids), {
    pixelValuesImages: new Float32Array(3 * 224 * 224),
  })

  try {
    await probe('missing.mp4')
  } catch (err) {
    const code = (err as Error & { code?: string }).code
    console.log(code, answered, streamed, widthHeight, facts, meta, encoded, board, result, seconds, generated, logits, quantized, ggufPath)
  }
}

void main()
