"""Distributed training on Ray Train, one concern per module.

    driver.py      builds and runs the ``TorchTrainer`` (paths, datasets, Ray settings) and
                   returns a typed ``TrainingResult``                                    [Ray]
    worker.py      ``train_func_per_worker``: build, loop, checkpoint, report, MLflow   [Ray]
    build.py       from config sections to parts: model, batching, sampler, strategy,
                   optimizer, and the composed engine
    engine.py      ``TrainingEngine``: one optimizer step, validation, resume state;
                   ``train_step`` / ``eval_step`` / ``optimizer_step`` as plain functions
    objective.py   task losses and their weighting (static or learned), router loss
    strategies.py  which task each micro-batch trains, and when the encoder is frozen
    streams.py     never-ending per-task batch streams over one rank's rows
    schedule.py    learning-rate warmup + cosine decay
    metrics.py     train metrics summed over ranks, progress lines
    checkpoint.py  the checkpoint directory format (versioned) and its I/O
    dist.py        rank logic: rank 0, device, backend, precision, print0

Only driver.py and worker.py import Ray; everything else is plain torch, tested in one process.
"""
