//! The seed's models, cases (a) through (f) of the Keras reference, each built in a fresh session
//! and printed with its Keras 3 summary, one after the other; nothing else goes to stdout.
//!
//! The Sobel case (e) also predicts on the reference input and compares with Keras's output
//! (reported on stderr; the example fails if they differ by more than 1e-5).
//!
//! Run: `cargo run --release --example seed`

use frostnet::layers::clear_session;
use frostnet::seed;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for case in ["a", "b", "c", "d", "e", "f"] {
        clear_session();
        let mut model = seed::build(case)?;
        print!("{}", model.summary());
        if case == "e" {
            let fixture = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/sobel_conv_keras3.npz"
            );
            let err = seed::sobel_error(&mut model, fixture)?;
            eprintln!("case e: Sobel prediction vs Keras 3, max abs error {err:.2e}");
            if err > 1e-5 {
                return Err(format!("Sobel output differs from Keras by {err}").into());
            }
        }
    }
    Ok(())
}
