"""morphnas.spaces: what a search can explore.

* :mod:`.registry` — seeds by name (``create_seed``), incl. ``torchvision:<model>``
  (:mod:`.torchvision_seed`); the classes behind it are in :mod:`.catalog`;
* :mod:`.variants` — the paper's ``morph<depth>_<k1>c<k2>[_2branch][_half]``, derived by morph ops;
* :mod:`.counting` — params / MB / FLOPs / depth by the paper's conventions;
* :mod:`.actions` — the action space (``actions:`` of a search config), re-exported from
  :mod:`.action_types` (values), :mod:`.action_parse` (declarative parsing), :mod:`.action_core`
  (costs, sites), :mod:`.action_sampling` (random draws), :mod:`.action_domains` (fixed sampler
  domains) and :mod:`.action_space` (the class); :mod:`.sites` — where sites sit; :mod:`.errors`;
* :mod:`.draw` — pictures of networks; :mod:`.resolve` — a SPEC string to a network.

Modules import each other one way only (no cycles, not even inside functions).
"""
