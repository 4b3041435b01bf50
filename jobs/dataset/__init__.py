"""Labelled data: read label files, validate them, split and write TFRecords with the label map."""
