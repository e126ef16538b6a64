"""The evaluate stage's KPIs on synthetic collections: each KPI's time, the scaling, and the libraries' own calls.

Per size (wells × 384 features; 80 % treated wells of perturbations with 8
replicates, 20 % negative controls, 5 batches of 4 plates, 2 sources, one
MoA per 20 perturbations), ``--methods`` corrected versions of the same
wells (the batch effect shrinking method by method) are evaluated as the
stage does it: one ``MethodEvaluator`` built once, then every method in
turn, in this process with ``--threads`` threads. The KPIs' seconds are
summed over the methods; "build" is the label-only preparation; "imports"
is the first import of the KPI modules (scikit-learn, scib-metrics' JAX,
copairs). The peers, run in the same process on the first method's
profiles, are the calls a user would write instead:

- ``silhouette_batch``: ``sklearn.metrics.silhouette_score(metric="cosine")``;
- ``ilisi_batch`` + ``graph_connectivity``: scib-metrics' own pipeline,
  ``pynndescent`` neighbours (compiled beforehand on 500 rows, not timed)
  then ``ilisi_knn`` and ``graph_connectivity``;
- replicate retrieval vs negcon: copairs ``average_precision`` +
  ``mean_average_precision`` (same null size), as its documentation calls it.

The ratio is the peer's seconds over ours for one method. Prints Markdown
tables. Run from the repository root::

    .venv/bin/python benchmarks/evaluate.py --sizes 5000,10000,20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = 384
REPLICATES = 8
BATCHES, PLATES_PER_BATCH = 5, 4
PERTURBATIONS_PER_MOA = 20


def synthetic(n: int, methods: int, seed: int = 0) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Metadata and one matrix per method: biology + batch effect (shrinking with the method) + noise."""
    rng = np.random.default_rng(seed)
    n_treated = int(n * 0.8) // REPLICATES * REPLICATES
    n_perturbations = n_treated // REPLICATES
    perturbation = np.concatenate([np.repeat(np.arange(n_perturbations), REPLICATES), np.full(n - n_treated, -1)])
    batch = rng.integers(0, BATCHES, n)
    plate = batch * PLATES_PER_BATCH + rng.integers(0, PLATES_PER_BATCH, n)
    meta = pd.DataFrame(
        {
            "Metadata_Source": np.where(batch < 3, "source_1", "source_2"),
            "Metadata_Batch": [f"batch_{b}" for b in batch],
            "Metadata_Plate": [f"plate_{p:02d}" for p in plate],
            "Metadata_Well": [f"w{i:05d}" for i in range(n)],
            "Metadata_PertType": np.where(perturbation < 0, "negcon", "trt"),
            "Metadata_Perturbation": np.where(perturbation < 0, "DMSO", np.char.add("p", perturbation.astype(str))),
            "Metadata_MoA": np.where(perturbation < 0, None, np.char.add("moa", (perturbation // PERTURBATIONS_PER_MOA).astype(str))),
            "Metadata_Target": np.where(perturbation < 0, None, np.char.add("t", (perturbation // 10).astype(str))),
        }
    )  # fmt: skip
    moa = rng.normal(0, 1, (n_perturbations // PERTURBATIONS_PER_MOA + 1, FEATURES))
    biology = moa[np.arange(n_perturbations) // PERTURBATIONS_PER_MOA] + rng.normal(0, 1, (n_perturbations, FEATURES))
    signal = np.where(perturbation[:, None] >= 0, biology[np.maximum(perturbation, 0)], 0.0)
    shift = rng.normal(0, 1, (BATCHES, FEATURES))
    noise = rng.normal(0, 2, (n, FEATURES))
    return meta, [signal + shift[batch] * (1 - m / methods) + noise for m in range(methods)]


def ours(meta: pd.DataFrame, matrices: list[np.ndarray], threads: int) -> dict[str, float]:
    """Seconds per KPI (summed over the methods), of the label-only build, and in all."""
    from threadpoolctl import threadpool_limits

    from workflow_scripts.evaluate.methods import MethodEvaluator
    from workflow_scripts.settings import complete

    settings = complete({"plates": "unused"})["evaluation"]
    names = [f"f{i:03d}" for i in range(FEATURES)]
    started = time.perf_counter()
    with threadpool_limits(threads):
        evaluator = MethodEvaluator(meta, "synthetic", settings, threads)
        built = time.perf_counter()
        for number, x in enumerate(matrices):
            evaluator.evaluate(f"method_{number}", x, names)
    seconds = {**evaluator.batch.seconds, **evaluator.biology.seconds}
    return {"build": built - started, **seconds, "all": time.perf_counter() - started}


def peers(meta: pd.DataFrame, x: np.ndarray, null_size: int) -> dict[str, float]:
    """Seconds of the libraries' own calls on one method's profiles."""
    import scib_metrics
    from copairs.map import average_precision, mean_average_precision
    from copairs.matching import assign_reference_index
    from scib_metrics.nearest_neighbors import pynndescent
    from sklearn.metrics import silhouette_score

    treated = (meta["Metadata_PertType"] != "negcon").to_numpy()
    seconds = {}
    started = time.perf_counter()
    silhouette_score(x[treated], meta.loc[treated, "Metadata_Batch"], metric="cosine")
    seconds["silhouette_batch"] = time.perf_counter() - started
    unit = x[treated] / np.linalg.norm(x[treated], axis=1, keepdims=True)
    pynndescent(unit[:500], n_neighbors=16, random_state=0)  # numba compiles on the first call: not timed
    started = time.perf_counter()
    graph = pynndescent(unit, n_neighbors=16, random_state=0)
    scib_metrics.ilisi_knn(graph, meta.loc[treated, "Metadata_Batch"].to_numpy(), scale=True)
    scib_metrics.graph_connectivity(graph, meta.loc[treated, "Metadata_Perturbation"].to_numpy())
    seconds["ilisi_batch + graph_connectivity"] = time.perf_counter() - started
    started = time.perf_counter()
    key, index = "Metadata_Perturbation", "Metadata_Reference_Index"
    referenced = assign_reference_index(meta, "Metadata_PertType == 'negcon'", reference_col=index)
    ap = average_precision(referenced, x, [key, index], [], [], [key, index], progress_bar=False)
    with tempfile.TemporaryDirectory() as cache:
        mean_average_precision(ap, [key], null_size, 0.05, 0, progress_bar=False, cache_dir=cache)
    seconds["replicate retrieval vs negcon"] = time.perf_counter() - started
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,10000,20000")
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peers", action="store_true", help="skip the libraries' own calls")
    args = parser.parse_args()
    started = time.perf_counter()
    import scib_metrics  # noqa: F401  (JAX)

    import workflow_scripts.evaluate.methods  # noqa: F401  (scikit-learn, copairs)

    imports = time.perf_counter() - started
    sizes = [int(size) for size in args.sizes.split(",")]
    results, ratios = {}, []
    for n in sizes:
        meta, matrices = synthetic(n, args.methods)
        results[n] = ours(meta, matrices, args.threads)
        print(f"{n} wells: {results[n]['all']:.1f} s for {args.methods} methods", file=sys.stderr, flush=True)
        if not args.no_peers:
            per_method = {k: v / args.methods for k, v in results[n].items()}
            mine = {
                "silhouette_batch": per_method["silhouette_batch"],
                "ilisi_batch + graph_connectivity": per_method["ilisi_batch"] + per_method["graph_connectivity"],
                "replicate retrieval vs negcon": per_method["replicate retrieval vs negcon"],
            }
            for name, seconds in peers(meta, matrices[0], 10000).items():
                ratios.append({"wells": n, "KPI": name, "ours (s/method)": mine[name], "peer (s)": seconds,
                               "peer / ours": seconds / mine[name]})  # fmt: skip
    table = pd.DataFrame(results).rename_axis("step (seconds, all methods)")
    print(f"Imports: {imports:.1f} s; {args.methods} methods; {args.threads} threads; {FEATURES} features\n")
    print(table.to_markdown(floatfmt=".2f"))
    if ratios:
        print()
        print(pd.DataFrame(ratios).to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
