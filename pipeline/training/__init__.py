"""Everything a training stage runs (DESIGN.md §5): `model_factory` finds a BERT checkpoint on
disk and builds VideoCLIP from it, `warm_start` loads a released VideoCLIP `checkpoint_best.pt`,
`data` turns pairs and features into batches (`PairClips`, `HowToClips`, `collate`,
`make_loader`), `objectives` says what each stage minimises, `variants` names the fine-tuned
variants (FineCo, the baseline, sweep points), `loop` is the shared training loop, `checkpoints`
writes and restores its resumable state, and `fit` ties a model, an objective and a dataset to a
stage folder. The pretrain and finetune stages call `fit`; evaluate reuses the model factory and
the data.
"""
