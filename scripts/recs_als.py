"""ALS (PyPI `implicit`) on the training purchases of benches/recs_evaluate.rs: the peer the
issue names for the offline evaluation. Not part of Emporium; the harness runs it.

    recs_als.py train.csv users.csv out.csv K

train.csv: `user,product` per training purchase; users.csv: one user per line, the users to
recommend for; out.csv: `user,product` per recommendation, best first, K per user, what the
user bought in training left out. Hyperparameters: the best of a small grid on the
evaluation's own split (factors 2-64, confidence 1-80 or BM25 weighting, regularization
0.01-1), which favours ALS: on this data few factors win (the shop's purchases follow
popularity first). The seed is fixed, and one thread is used so that runs repeat.
"""

import csv
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from implicit.als import AlternatingLeastSquares  # noqa: E402

FACTORS = 2
CONFIDENCE = 20.0


def main(train_path, users_path, out_path, k):
    users, items, rows, cols = {}, {}, [], []
    with open(train_path, newline="") as f:
        for user, product in csv.reader(f):
            rows.append(users.setdefault(user, len(users)))
            cols.append(items.setdefault(product, len(items)))
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items))
    )
    weighted = (matrix * CONFIDENCE).tocsr()
    model = AlternatingLeastSquares(
        factors=FACTORS, regularization=0.1, iterations=15, random_state=42, num_threads=1
    )
    model.fit(weighted, show_progress=False)
    names = {i: p for p, i in items.items()}
    with open(users_path) as f:
        wanted = [line.strip() for line in f if line.strip()]
    with open(out_path, "w", newline="") as out:
        w = csv.writer(out)
        known = [u for u in wanted if u in users]
        if not known:
            return
        ids = np.array([users[u] for u in known])
        recs, _ = model.recommend(ids, weighted[ids], N=k, filter_already_liked_items=True)
        for user, row in zip(known, recs):
            for i in row:
                if i >= 0:
                    w.writerow([user, names[int(i)]])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
