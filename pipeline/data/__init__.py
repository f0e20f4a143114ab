"""Stage 1, prepare: raw MNIST files (checksummed) -> binarized, split Parquet (prepare), and
the loader every later stage reads them with (splits)."""
