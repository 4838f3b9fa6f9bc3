"""The built-in datasets, one module each; every public module registers its datasets (see ``..registry``)."""
