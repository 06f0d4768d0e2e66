//! Reading and writing plain arrays (NumPy `.npy` / `.npz`), for data and for checking against
//! Keras's outputs.

pub mod npy;
