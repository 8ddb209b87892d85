"""What is compared: the encoder, poolings, modes, heads, the task and the LightningModule that composes them.
Imports nothing from the other layers (tests/test_layers.py)."""
