"""Training side of the JRC detector: model, data, synthetic forgeries, training, evaluation."""
