"""Test data: a calibrated, synthetic landing folder of any size (`warehouse generate`), and the
reported figures it carries as they were reported. Not part of the pipeline: the pipeline reads
whatever lands, generated or not."""
