"""NotaGen Studio's engine: model, tokenizer, sampling, generation, data, training, rendering.

Nothing here imports gradio or the studio UI.
"""
