//! Sets up linking for a Node addon (napi-rs): Node's symbols resolve at load time.
fn main() {
    napi_build::setup();
}
