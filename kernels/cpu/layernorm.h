// LayerNorm over rows: out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias, with the
// mean and the (biased) variance of row r over its dim values (GPT-J's ln_1 / ln_f).
// Sums run sequentially in index order, as RmsNorm's do, so a row's result depends on
// that row alone.
// Thread-safety: reentrant; single-threaded (rows are short).
#pragma once

namespace flover::cpu {

// x, out: [n_rows, dim] (may alias); weight, bias: [dim].
void LayerNorm(const float* x, const float* weight, const float* bias, float* out, int n_rows, int dim, float eps);

}  // namespace flover::cpu
