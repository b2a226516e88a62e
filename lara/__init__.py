"""LARA: Latent Action Representation Alignment.

`lara.attach(vla)` adds a jointly trained latent action model and an alignment loss to any VLA;
`lara.detach(model)` hands back the untouched VLA for inference.
"""

__version__ = "0.1.0"
