#include "worker/model/rotary_layout.h"

#include <algorithm>

#include "common/check.h"

namespace flover {

void HalvesToPairs(std::span<uint8_t> rows, int head_dim, int64_t row_bytes) {
  FLOVER_CHECK(head_dim > 0 && head_dim % 2 == 0 && row_bytes > 0) << "head_dim " << head_dim << ", row bytes "
                                                                    << row_bytes;
  const size_t head = static_cast<size_t>(head_dim * row_bytes), row = static_cast<size_t>(row_bytes);
  FLOVER_CHECK(rows.size() % head == 0) << rows.size() << " bytes are not whole heads of " << head;
  const int half = head_dim / 2;
  std::vector<uint8_t> tmp(head);
  for (size_t h = 0; h < rows.size(); h += head) {
    uint8_t* base = rows.data() + h;
    std::copy_n(base, head, tmp.data());
    for (int i = 0; i < half; ++i) {
      std::copy_n(tmp.data() + i * row, row, base + (2 * i) * row);
      std::copy_n(tmp.data() + (half + i) * row, row, base + (2 * i + 1) * row);
    }
  }
}

void HalvesToPairs(std::vector<float>& t, int head_dim, int64_t cols) {
  HalvesToPairs(std::span<uint8_t>(reinterpret_cast<uint8_t*>(t.data()), t.size() * sizeof(float)), head_dim,
                cols * static_cast<int64_t>(sizeof(float)));
}

}  // namespace flover
