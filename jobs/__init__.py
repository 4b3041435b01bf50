"""Labelled images to a trained, evaluated and exported object detector, locally or on Vertex AI."""

__version__ = "0.1.0"
