"""NotaGen Studio's Gradio UI: one module per tab, each with `render()` and `listen()`.

It holds no ML logic and never imports torch; every action calls `pipelines`.
"""
