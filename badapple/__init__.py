"""Play a video on the layer-0 attention maps of GPT-2."""
