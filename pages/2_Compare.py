"""Compare: metrics with CIs and paired tests, training curves, agreement between variants."""

import pandas as pd
import streamlit as st

from recexplain import dashboard as D
from recexplain import leaderboard, viz
from recexplain import workbench as W

METRICS = ("ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20")

s = D.page("Compare")
defaults = D.ensure_default_runs(s)  # the variants ready now (the first start adds the rest)
options = W.runs_on(D.runs_table(s.runs_dir))
options += [r.run_id for r in defaults if r.run_id not in options]
D.follow_defaults("compare_runs", [r.run_id for r in defaults], options)
chosen = st.multiselect(
    "Runs (attention variants and baselines trained on the same data)", options, key="compare_runs"
)
if not chosen:
    st.warning("Pick at least one run.")
    st.stop()
with D.guard("Could not load a run"):
    runs = [D.get_run(r, s.runs_dir) for r in chosen]
    if len({r.fingerprint for r in runs}) > 1:
        raise ValueError("the chosen runs were trained on different data; pick runs of one set")
    table = D.compare_runs(runs, METRICS)
    ds, split = D.get_split(runs[0])

st.caption(D.md(f"Showing: {', '.join(label for label, _ in W.labelled(runs))}"))
st.subheader("Test metrics (95% bootstrap CI) and paired tests")
st.dataframe(viz.compare_table(table, METRICS), hide_index=True, width="stretch")
st.caption(
    f"p: two-sided paired sign-flip test over the same {len(split.eval_users):,} users against "
    f"the reference run ({D.md(table.attrs.get('reference'))}, best on {METRICS[0]}). Protocol: "
    f"{runs[0].metrics.get('protocol', 'leave-last-out, full ranking')}."
)
types = {label: run.model_type for label, run in W.labelled(runs)}
line = leaderboard.baselines_line(table, METRICS[0], label="run", model_types=types)
st.markdown(
    D.md(f"Among these runs: {line}.") + " Sequential baselines use the order of the history "
    "(SASRec, Markov chain, multi-step transitions); the others treat it as a set or ignore it. "
    "`recexplain leaderboard` trains baselines (`--models`)."
)
metrics = viz.metrics_frame({lab: r.metrics for lab, r in W.labelled(runs)})
metrics = metrics[metrics["metric"].isin(["hr", "ndcg", "mrr", "precision", "recall", "f1"])]
st.altair_chart(viz.metric_bars(metrics), theme=None)

st.subheader("Training curves")
curves = viz.history_frame({lab: r.history for lab, r in W.labelled(runs)})
if len(curves):
    st.altair_chart(viz.training_curves(curves), theme=None)
else:
    st.info("These runs saved no per-epoch history (baselines fit in one step).")

if len(runs) > 1:
    st.subheader("Agreement between runs")
    jaccard, wins = D.agreement(runs, split)
    left, right = st.columns(2)
    with left:
        st.altair_chart(viz.jaccard_hist(jaccard), theme=None, width="stretch")
        means = jaccard.groupby("pair", sort=False)["jaccard"].mean()
        mean = ", ".join(f"{pair} {m:.2f}" for pair, m in means.items())
        st.caption(D.md(f"Overlap of each user's top-10 lists (Jaccard); mean: {mean}"))
    with right:
        st.altair_chart(viz.user_wins(wins), theme=None, width="stretch")
        st.caption("Which run ranks each user's held-out item best (NDCG@10), by history length.")

st.subheader("Faithfulness of the explanations")
parts = [viz.faithfulness_frames(W.faithfulness(r), lab) for lab, r in W.labelled(runs)]
summary = pd.concat([p[0] for p in parts], ignore_index=True)
curve = pd.concat([p[1] for p in parts], ignore_index=True)
if len(summary):
    st.dataframe(summary, hide_index=True, width="stretch")
    if len(curve):
        st.altair_chart(viz.deletion_curves(curve), theme=None)
    st.caption("Deleting the top-k attributed history items vs k random ones: a faithful method "
               "drops the score faster than random deletion.")  # fmt: skip
else:
    st.info("No faithfulness check saved for these runs yet (runs/<id>/faithfulness.json).")
