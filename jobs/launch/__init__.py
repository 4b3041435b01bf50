"""Launching jobs: images, accelerators, Vertex AI custom jobs (or the local backend) and run records."""
