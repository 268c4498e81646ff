//! Tokenizer, USER/ASSISTANT template, placeholder expansion.
