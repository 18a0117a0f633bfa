//! Embedding (`python/edgetrain/layers/embedding.py`): rows of a table picked by ids.
//! The ids arrive as f32 (the model's input tensor) and must be whole numbers in
//! `[0, in_dim)`; anything else is refused as bad data before any output is written.

use crate::error::{check_len, Error, Result};

/// The table's size: `in_dim` rows of `out_dim` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingShape {
    /// Rows of the table (the id range).
    pub in_dim: usize,
    /// Entries per row.
    pub out_dim: usize,
}

/// The ids as row indices, or the first bad id with the count of bad ones.
fn rows(op: &'static str, shape: &EmbeddingShape, ids: &[f32]) -> Result<Vec<usize>> {
    let bad = |v: f32| !(v >= 0.0 && (v as f64) < shape.in_dim as f64 && v.floor() == v);
    if let Some(first) = ids.iter().position(|&v| bad(v)) {
        let count = ids.iter().filter(|&&v| bad(v)).count();
        return Err(Error::InvalidData {
            op,
            reason: format!(
                "ids must be whole numbers in [0, {}), got {} at flat index {first} ({count} bad of {})",
                shape.in_dim,
                ids[first],
                ids.len()
            ),
        });
    }
    Ok(ids.iter().map(|&v| v as usize).collect())
}

/// `y[i, :] = table[ids[i], :]` for every id, overwriting `y (len(ids), out_dim)`.
pub fn forward(shape: &EmbeddingShape, ids: &[f32], table: &[f32], y: &mut [f32]) -> Result<()> {
    const OP: &str = "embedding_forward";
    check_len(OP, "table", [shape.in_dim, shape.out_dim], table.len())?;
    check_len(OP, "y", [ids.len(), shape.out_dim], y.len())?;
    let rows = rows(OP, shape, ids)?;
    let d = shape.out_dim;
    for (out, &r) in y.chunks_exact_mut(d.max(1)).zip(&rows) {
        out.copy_from_slice(&table[r * d..(r + 1) * d]);
    }
    Ok(())
}

/// `d_table = 0`, then `d_table[ids[i], :] += dy[i, :]` in id order (numpy's `add.at`).
pub fn grad(shape: &EmbeddingShape, ids: &[f32], dy: &[f32], d_table: &mut [f32]) -> Result<()> {
    const OP: &str = "embedding_grad";
    check_len(OP, "d_table", [shape.in_dim, shape.out_dim], d_table.len())?;
    check_len(OP, "dy", [ids.len(), shape.out_dim], dy.len())?;
    let rows = rows(OP, shape, ids)?;
    let d = shape.out_dim;
    d_table.fill(0.0);
    for (g, &r) in dy.chunks_exact(d.max(1)).zip(&rows) {
        for (t, &v) in d_table[r * d..(r + 1) * d].iter_mut().zip(g) {
            *t += v;
        }
    }
    Ok(())
}
