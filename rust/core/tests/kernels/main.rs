//! Kernel tests: every backward against central finite differences of an f64 reference
//! forward written here, every forward against that reference, plus the GEMM against a
//! triple loop, im2col/col2im adjointness, optimizer steps against the numpy spec's bits.

mod support;
mod training;

mod activation;
mod batch_norm;
mod conformance;
mod conv;
mod dropout;
mod fc;
mod gemm;
mod layer_norm;
mod loss;
mod merge;
mod optim;
mod pool;
mod robustness;
mod window;
