// RMSNorm over rows: out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight, as run.c computes
// it (sum of squares, divide by dim, add eps, reciprocal square root).
// Thread-safety: reentrant; single-threaded (rows are short).
#pragma once

namespace flover::cpu {

// x, out: [n_rows, dim] (may alias); weight: [dim].
void RmsNorm(const float* x, const float* weight, float* out, int n_rows, int dim, float eps);

}  // namespace flover::cpu
