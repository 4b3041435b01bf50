"""What an evaluation shows people: matching at IoU 0.5, plots, the image grid and ``report.html``.

Nothing here imports TensorFlow: it works on COCO JSON, NumPy arrays and Pillow images, and returns bytes that
``jobs.runtime.evaluate`` writes (local paths or gs://). Matplotlib is imported lazily, with the Agg canvas.
"""
