"""A trained model at work: the `poolhead` command, predictions, exports, MTEB."""
