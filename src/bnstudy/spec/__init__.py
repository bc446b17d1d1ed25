"""What a study is: its protocol (schema, validation, expansion), its trials and their ids,
its pre-registered hypotheses, the plain design the analysis reads, the options of heads and
architectures, the plugins that register its own networks, metrics and optimisers, and its
own trial function (``trial_function``). This package may import only the torch-free
vocabulary of bnstudy (``bnstudy.catalogue``, ``bnstudy.data.spec``, ``bnstudy.models.facts``,
``bnstudy.suggest``, ``bnstudy.results_format``) and never torch, nor execution, training,
statistics or the report (``feasibility`` reaches the data and model checks, lazily, when
called). Nothing is imported here, so ``import bnstudy.spec.trial`` loads the standard library
only.
"""
