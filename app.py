"""recexplain workbench, home page (Overview): `streamlit run app.py` (or `make run`)."""

import streamlit as st

from recexplain import dashboard as D
from recexplain import viz
from recexplain import workbench as W
from recexplain.data import dataset_info

s = D.page("Overview")
st.caption(
    "Three attention recommenders (additive, multiplicative, hard) trained on the same data, "
    "compared with full-ranking metrics and explained per history item. Pages: Train, Compare, "
    "Explain, Attention playground, Share (sidebar)."
)

with D.guard("Could not load the data set"):
    ds = D.get_dataset(s.data_cfg)
    info = dataset_info(ds)

st.subheader(f"Data set: {D.md(info['name'])}")
cols = st.columns(5)
cols[0].metric("Users", f"{info['users']:,}")
cols[1].metric("Items", f"{info['items']:,}")
cols[2].metric("Interactions", f"{info['interactions']:,}")
cols[3].metric("Sparsity", f"{info['sparsity']:.2%}")
cols[4].metric("Time span", f"{info['time_span_days']:.0f} days")
st.caption(D.md(f"{info['time_min']} to {info['time_max']} · source: {info['source']}"))
st.text(f"Fingerprint (SHA-256): {info['fingerprint']}")
if info.get("dropped"):
    st.warning(D.md(f"Rows dropped while loading: {info['dropped']}"))

st.subheader("Runs")
D.ensure_default_runs(s, compact=False)  # the data part above never waits for training
table = D.runs_table(s.runs_dir)
st.dataframe(table, hide_index=True, width="stretch")
broken = table.loc[table["status"] == "broken", "run_id"].tolist() if len(table) else []
if broken:
    st.warning(D.md(f"Broken runs, left out of every page: {', '.join(broken)} (see 'error')."))

metric = st.selectbox("Leaderboard metric", ["ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20"])
metrics = {rid: W.run_metrics(rid, s.runs_dir) for rid in W.runs_on(table, ds.fingerprint)}
frame = viz.metrics_frame(metrics)
if len(frame[frame["name"] == metric]):
    st.altair_chart(viz.leaderboard(frame, metric), theme=None, width="stretch")
    st.caption(
        "Leave-last-out test set, every item ranked (seen items excluded); bars: mean over "
        "users, lines: 95% bootstrap CI. Differences are tested on the Compare page."
    )
else:
    st.info("No run on this data set reports this metric yet.")
