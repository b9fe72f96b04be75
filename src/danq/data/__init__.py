"""Data: sequence encoding, JASPAR motifs, the synthetic benchmark, TFRecord shards, tf.data."""
