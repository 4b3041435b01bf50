"""The code that runs inside the job containers (and locally, as the local backend): train, evaluate, export.

Every module here imports TensorFlow; nothing outside ``jobs.runtime`` may import them at module level.
"""
