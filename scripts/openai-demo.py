"""The demo's OpenAI client call (scripts/demo.sh): a chat completion streamed from the
cluster's HTTP endpoint ($FLOVER_HTTP_ENDPOINT, set by `flover up --exec`) through the
real `openai` package, as any application would make it."""

import os

import openai

client = openai.OpenAI(base_url=os.environ["FLOVER_HTTP_ENDPOINT"] + "/v1", api_key="unused")
stream = client.chat.completions.create(
    model="stories260K",
    messages=[{"role": "user", "content": "Tell me a story about a cat."}],
    max_completion_tokens=80, temperature=0.8, seed=3, stream=True)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
