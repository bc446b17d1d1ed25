"""Training: one trial, a pack of K seeds, and a pre-training stage, on one device.

``train.run_trial(trial, device)`` builds the trial's data and model, optimises, evaluates
and returns a :class:`~bnstudy.training.trial_result.TrialResult`; ``packing.run_pack`` trains
K trials that differ only in seed as one model, each copy on its own random streams;
``pretrain`` trains and caches bodies for a ``pretrain`` stage; all three train with the one
loop of ``loop`` (batches, optimiser and schedule, curves); ``metrics`` are pure functions of
predictions, labels and activations. ``context`` is the contract of a protocol's own trial
function (what it gets, what it returns), ``optimizers`` the optimisers by name (a plugin's
too), ``plugin_check`` the passes every plugin network goes through before training.

May import: ``spec.trial`` (never pydantic or yaml: workers load this package), ``data``,
``models``, the shared vocabulary and ``bnstudy.atomic``. Never ``execution``, ``store``,
``stats`` or ``report``. This ``__init__`` imports nothing (torch loads with the modules).
"""
