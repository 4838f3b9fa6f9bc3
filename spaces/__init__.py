"""morphnas.spaces: what a search can explore.

* :mod:`.registry` — seeds by name (``create_seed``), incl. ``torchvision:<model>``;
* :mod:`.variants` — the paper's ``morph<depth>_<k1>c<k2>[_2branch][_half]``, derived by morph ops;
* :mod:`.counting` — params / MB / FLOPs / depth by the paper's conventions;
* :mod:`.actions` — the action space (``actions:`` of a search config), :mod:`.sites` — where sites sit;
* :mod:`.draw` — pictures of networks; :mod:`.resolve` — a SPEC string to a network.
"""
