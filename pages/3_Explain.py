"""Explain: why each variant recommends an item to a user, what-if edits, and new users."""

import streamlit as st

from recexplain import dashboard as D
from recexplain import export, viz
from recexplain import workbench as W
from recexplain.explain import sentence

s = D.page("Explain")
runs, ds, split, user, method = D.pick_view(s)
items = runs[0].items
D.check_dataset_param(ds.name)

base = split.history(user, "test")
history, hidden = D.whatif(user, base, runs[0])
if len(history) == 0:
    st.warning("The edited history is empty: add an item or reset the what-if edits.")
    st.stop()

with D.guard("Could not compute recommendations"):
    recs = D.recommendations(runs, history, 10, hidden)
test_item = int(split.test[user])
if test_item:
    ranks = [D.held_out_rank(r, user) for r in runs]
    shown = ", ".join(
        f"{lab} {rank:.0f}" for lab, rank in zip(W.labels(runs), ranks, strict=True) if rank
    )
    held = f"{items.at[test_item, 'title']} (test rank: {shown or 'n/a'})"
    st.caption(f"Held-out item: {D.md(held)} · history: {len(base)} items; the model sees the "
               f"last {runs[0].max_len}")  # fmt: skip

st.subheader("Top-10 per variant")
cols = st.columns(len(recs))
for col, (label, df) in zip(cols, recs.items(), strict=True):
    col.markdown(f"**{D.md(label)}**")
    D.table(viz.recommendation_table(df, items), col)

item = D.pick_item(runs[0], recs, [test_item] if test_item else [], user)
with D.guard("Could not explain this item"):
    attrs = D.explanations(runs, history, item, method)
frame = viz.attribution_frame(attrs, items)

st.subheader(f"Why {D.md(items.at[item, 'title'])}?")
for run, (label, attr) in zip(runs, attrs.items(), strict=True):
    note = "" if attr.rank is None else f" (rank {attr.rank + 1}"
    if note and method == "attention":
        note += f"; {attr.context:.0%} of the weight is on the sequence as a whole"
    st.markdown(f"**{D.md(label)}**: {D.md(sentence(attr, items) + note + (')' if note else ''))}")
    badge = export.faithfulness_line(W.faithfulness(run), method)
    if badge:
        st.caption(D.md(badge))
D.thumbs(user, item)

st.altair_chart(viz.weights_heatmap(frame), theme=None, width="stretch")
st.altair_chart(viz.history_weights(frame), theme=None)
st.caption(export.CAVEAT)

if st.toggle("New user: pick a few items and get recommendations", key="cold_on"):
    picked = st.multiselect("Items this person liked (oldest first)", items.index.tolist(),
                            format_func=D.item_label(runs[0]), key="cold_items")  # fmt: skip
    if picked:
        with D.guard("Could not recommend for these items"):
            cold = D.recommendations(runs, picked, 10)
        for col, (label, df) in zip(st.columns(len(cold)), cold.items(), strict=True):
            col.markdown(f"**{D.md(label)}**")
            D.table(viz.recommendation_table(df, items), col)
st.page_link("pages/5_Share.py", label="Share or export this explanation", icon=":material/share:")
