// GET /v1/models: OpenAI's list shape, with the one served model.
#include "coordinator/openai/exchange.h"
#include "coordinator/openai/json_output.h"

namespace flover::openai {

std::string ModelsBody(const ServedModel& model, int64_t created_unix) {
  Json entry{{"id", model.id}, {"object", "model"}, {"created", created_unix}, {"owned_by", "flover"}};
  return DumpJson(Json{{"object", "list"}, {"data", Json::array({std::move(entry)})}});
}

}  // namespace flover::openai
