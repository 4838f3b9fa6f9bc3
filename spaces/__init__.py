"""morphnas.spaces: what a search can explore.

* ``seeds/`` — seed networks, one decorated builder each (:mod:`.seeds.catalog` holds the
  registry and the decorators); the paper's ``morph<depth>_<k1>c<k2>[_2branch][_half]`` variants,
  derived by morph ops (:mod:`.seeds.variants`); ``torchvision:<model>`` (:mod:`.seeds.torchvision_seed`);
* :mod:`.registry` — seeds by name (``create_seed``, ``list_seeds``): imports every seed file;
* ``actions/`` — the action space (``actions:`` of a search config; :mod:`.actions` re-exports its
  public names): value types, declarative parsing, costs and sites, random draws, fixed sampler
  domains, and where sites sit (:mod:`.actions.sites`);
* :mod:`.counting` — params / MB / FLOPs / depth by the paper's conventions;
* :mod:`.distance` — an edit distance between architectures; :mod:`.draw` — pictures of networks;
  :mod:`.resolve` — a SPEC string to a network; :mod:`.errors`.

Modules import each other one way only (no cycles, not even inside functions).
"""
