"""Play a video on the attention maps of a transformer: GPT-2, Llama, Qwen, Gemma, BERT ..."""
