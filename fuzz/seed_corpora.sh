#!/bin/sh
# Seeds each target's corpus with the Keras-written fixtures (run from fuzz/).
set -e
fx=../crates/frostnet/tests/fixtures
mkdir -p corpus/keras corpus/legacy_h5 corpus/weights_h5 corpus/native corpus/npy corpus/image corpus/npz corpus/history_csv
cp $fx/cnn_*.keras corpus/keras/
cp $fx/cnn_*_tfkeras.h5 $fx/cnn_*_keras3_legacy.h5 corpus/legacy_h5/
cp $fx/cnn_*.weights.h5 $fx/cnn_*_weights_only.h5 corpus/weights_h5/
cp $fx/cnn_input.npy $fx/cnn_*_output*.npy corpus/npy/
cp $fx/sobel_conv_keras3.npz $fx/keras_ops/scalar_ops.npz corpus/npz/
printf 'epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,0.69,0.55,0.68\n1,0.75,0.41,,0.39\n2,nan,inf,0.9,0.2\n' > corpus/history_csv/log.csv
find $fx/image_folder -type f ! -name '*.txt' -exec cp {} corpus/image/ \;
# A native file: written by the CLI from a fixture.
cargo run -q --manifest-path ../Cargo.toml -p frostnet-cli -- convert $fx/cnn_nested.keras corpus/native/cnn_nested.frostnet
