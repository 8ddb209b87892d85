"""One run top to bottom: plan (resolved once) -> build -> fit -> evaluate -> record (`train.py`)."""
