"""Speed figures: every model's training and inference throughput, and the project's data path against a
conventional one (``python -m benchmarks.bench``; figures and their reading in ``benchmarks/RESULTS.md``).

What it measures, on one device per run:

- **Models** at the homework's sizes (the ``full`` recipes: 32 px for P1, 224 px working resolution for the
  pretrained classifiers, 512 px for P2): training images/s through :func:`hw1lib.engine.train_one_epoch`
  (augmentation, precision and memory format exactly as the engine has them), inference images/s through
  :func:`hw1lib.engine.evaluate`, peak memory, FLOPs per image (``torch.utils.flop_counter``: matrix
  multiplications and convolutions only) and the achieved FLOP rate as a fraction of a matrix-multiply peak
  measured on the same device in the row's precision (bf16 on CUDA; on the CPU fp32, or bf16 for a recipe
  that trains in bf16 there).
- **Data paths**, side by side on the same stand-in folders, for one epoch of P1 model A and a pass of
  P2 model B: the project's (decoded tensors in memory, batch augmentation on the device) against a
  conventional one (a Dataset that opens every file with PIL and transforms it per item, through a
  ``DataLoader`` with 2 workers). First with the same step on both sides (model, optimiser, loss, memory
  format, precision): only the data differ. Then, for P1 model A, the project's engine as it trains
  against the conventional loop as it is usually written (NCHW, fp32): what a user's epoch costs.
- **Levers** for P1 model A: memory format, CPU bf16 autocast and ``torch.compile`` set one by one, to
  show what each buys (the engine's choice is marked).

Timings are medians of repeated steps or epochs (our CPU machines are shared and noisy). Models are built
with random weights: speed does not depend on the weights, and no download is needed.

What it is not: a test, nor part of the ``hw1lib`` package (nothing in the report depends on it). The
targets in ``benchmarks/README.md`` are goals to read against the figures.

Modules: :mod:`.plan` (what a run measures, at which sizes), :mod:`.timing`, :mod:`.flops`, :mod:`.memory`
(the measuring tools), :mod:`.levers` (model rows and levers), :mod:`.conventional` and :mod:`.data_paths`
(the data-path comparison), :mod:`.run` (one whole run), :mod:`.tables` (printed and markdown tables),
:mod:`.__main__` (the command line).
"""
