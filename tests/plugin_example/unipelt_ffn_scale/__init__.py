"""A unipelt plugin: the `ffn_scale` PELT submodule (see ffn_scale.py)."""
