#include "worker/model/rotary_layout.h"

#include <algorithm>

#include "common/check.h"

namespace flover {

void HalvesToPairs(std::vector<float>& t, int head_dim, int64_t cols) {
  FLOVER_CHECK(head_dim > 0 && head_dim % 2 == 0 && cols > 0) << "head_dim " << head_dim << ", cols " << cols;
  const size_t head = static_cast<size_t>(head_dim * cols), row = static_cast<size_t>(cols);
  FLOVER_CHECK(t.size() % head == 0) << t.size() << " values are not whole heads of " << head;
  const int half = head_dim / 2;
  std::vector<float> tmp(head);
  for (size_t h = 0; h < t.size(); h += head) {
    float* base = t.data() + h;
    std::copy_n(base, head, tmp.data());
    for (int i = 0; i < half; ++i) {
      std::copy_n(tmp.data() + i * row, row, base + (2 * i) * row);
      std::copy_n(tmp.data() + (half + i) * row, row, base + (2 * i + 1) * row);
    }
  }
}

}  // namespace flover
