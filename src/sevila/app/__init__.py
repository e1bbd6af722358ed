"""`sevila app`: a web page over `VideoQA` (Gradio, the optional extra ``sevila[app]``).

Two modules: `sevila.app.logic` holds everything the page does as plain functions with no Gradio (reading the
option rows, loading models, answering, finding moments, formatting results and errors), so it is tested
without a browser; `sevila.app.page` lays those out as a Gradio page and serves it. Importing this package
imports neither Gradio nor torch.
"""
