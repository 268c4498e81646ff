#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| video_llava_fuzz::weights(data));
