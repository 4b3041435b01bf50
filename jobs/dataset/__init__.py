"""Labelled data: read every common label format, check it (``data check``), chart it (``data stats``), and write
sharded TFRecords with the label map and COCO ground truth (``data prepare``), locally or to ``gs://``."""
