# The seed lab's app.py (step 5), for the lab's output on the embedded SmolLM2.
# Changed from the seed: the paths, SmolLM2's chat tokens in the prompt, and two lines for
# today's onnxruntime-genai, which removed `params.input_ids` and `generator.compute_logits()`
# in 0.6: the prompt goes in with `generator.append_tokens(...)`, and `generate_next_token()`
# computes the logits itself.
import sys

import onnxruntime_genai as og

model_folder = sys.argv[1] if len(sys.argv) > 1 else "models/smollm2/onnx-ao"

print("loading model and adapters...", end="", flush=True)
model = og.Model(f"{model_folder}/model")
adapters = og.Adapters(model)
adapters.load(f"{model_folder}/model/adapter_weights.onnx_adapter", "travel")
print("DONE!")

tokenizer = og.Tokenizer(model)
tokenizer_stream = tokenizer.create_stream()

params = og.GeneratorParams(model)
params.set_search_options(max_length=100, past_present_share_buffer=False)
user_input = "what is the best thing to see in chicago"
input_ids = tokenizer.encode(f"<|im_start|>user\n{user_input}<|im_end|>\n<|im_start|>assistant\n")

generator = og.Generator(model, params)

generator.set_active_adapter(adapters, "travel")
generator.append_tokens(input_ids)

print(f"{user_input}")

while not generator.is_done():
    generator.generate_next_token()

    new_token = generator.get_next_tokens()[0]
    print(tokenizer_stream.decode(new_token), end="", flush=True)

print("\n")
