#include "client/completion_output.h"

#include <sstream>

namespace flover {

bool ParseTokenIds(const std::string& text, std::vector<int>* ids) {
  ids->clear();
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      const int id = std::stoi(item, &used);
      if (item.find_first_not_of(' ', used) != std::string::npos) return false;
      ids->push_back(id);
    } catch (const std::exception&) {
      return false;
    }
  }
  return !ids->empty();
}

}  // namespace flover
