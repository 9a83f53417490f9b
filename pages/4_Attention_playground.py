"""Attention playground: the three variants step by step, beside the source article's versions."""

import numpy as np
import pandas as pd
import streamlit as st

from recexplain import dashboard as D
from recexplain import playground as P
from recexplain import viz

D.page("Attention playground")
st.caption(
    "Edit a query q, keys K and values V and follow each variant from scores to weights to "
    "output. Defaults: the source article's keys and values, with a query as wide as a key."
)


def matrix(label: str, default: np.ndarray, prefix: str, key: str) -> np.ndarray:
    """An editable matrix (rows x columns of floats); empty cells stop the page."""
    df = pd.DataFrame(default, columns=[f"{prefix}{j + 1}" for j in range(default.shape[1])])
    edited = st.data_editor(df, key=key, hide_index=False, width="stretch")
    values = edited.to_numpy(dtype=float)
    if np.isnan(values).any():
        st.error(f"{label}: fill in every cell.")
        st.stop()
    return values


dims = st.columns(3)
n = dims[0].number_input("keys n", 2, 8, 4)
d = dims[1].number_input("key width d", 1, 6, 2)
top_k = dims[2].number_input("hard: keys selected (k)", 1, int(n), 1)
q0, k0, v0 = P.example_inputs(int(n), int(d))
inputs = st.columns([1.3, 2, 2, 1.3])
with inputs[0]:
    st.markdown("**q** (query)")
    q = matrix("q", q0[None], "q", f"q_{d}")[0]
with inputs[1]:
    st.markdown("**K** (keys, one row each)")
    keys = matrix("K", k0, "k", f"K_{n}_{d}")
with inputs[2]:
    st.markdown("**V** (values, one row each)")
    values = matrix("V", v0, "v", f"V_{n}")
with inputs[3]:
    st.markdown("**v** (additive scorer)")
    v = matrix("v", np.ones((1, d)), "v", f"vv_{d}")[0]

problems = P.check_shapes(q, keys, values)
if problems:
    for p in problems:
        st.error(p)
    st.stop()

results = {
    "additive": P.additive(q, keys, values, v=v),
    "multiplicative": P.multiplicative(q, keys, values),
    f"hard (top-{top_k})": P.hard(q, keys, values, k=int(top_k)),
    "article 'multiplicative'": P.article_multiplicative(q, keys, values),
}
LATEX = {  # two short lines each, so they fit a quarter of the page
    "additive": [r"e_i = v^\top \tanh(W_q q + W_k k_i + b)", r"\alpha = \mathrm{softmax}(e)"],
    "multiplicative": [r"e_i = q^\top W k_i / \sqrt{d}", r"\alpha = \mathrm{softmax}(e)"],
    "hard": [r"S = \mathrm{top}_k(q^\top k_i / \sqrt{d})", r"\alpha_i = [i \in S] / k"],
    "article": [r"\mathrm{softmax}(\sigma(QK^\top))\,V", r"\sigma = \mathrm{sigmoid}"],
}
st.subheader("Step by step")
for col, (name, steps) in zip(st.columns(len(results)), results.items(), strict=True):
    with col:
        st.markdown(f"**{name}**")
        for line in LATEX[name.split(" ")[0].strip("'")]:
            st.latex(line)
        if "hidden" in steps.extra:
            st.caption("hidden = tanh(W_q q + W_k k_i + b), W_q = W_k = I, b = 0")
            st.table(pd.DataFrame(steps.extra["hidden"]).round(3))
        st.table(P.steps_table(steps).round(3), hide_index=True)
        st.markdown(f"sum of weights: `{steps.weights.sum():.3f}`")
        st.markdown(f"output Σ α_i v_i: `{np.round(steps.output, 3).tolist()}`")
st.altair_chart(viz.playground_weights(P.weights_frame(results)), theme=None)
st.caption(
    "Hard attention's output is exactly one row of V (k = 1) or the mean of k rows. The "
    "article's formula squashes scores into (0, 1) with a sigmoid before the softmax, so its "
    "weights stay close to uniform however different the keys are."
)

st.subheader("The source article, checked")
st.caption("From the article that started this project (in Chinese): its formulas and worked "
           "examples, what they should be, and why.")  # fmt: skip
st.latex(r"\text{article, additive: } \mathrm{softmax}\left(\frac{QK^\top}{\sqrt{d_k}}\right)V")
st.latex(r"\text{article, multiplicative: } \mathrm{softmax}(\mathrm{sigmoid}(QK^\top))V")
st.latex(r"\text{article, hard: } \mathrm{argmax}(QK^\top)\,V")
for m in P.article_mistakes():
    with st.container(border=True):
        st.markdown(f"**{m.section}**")
        st.markdown(f"Article: `{m.claim}`")
        st.markdown(f"Should be: `{m.correct}`")
        st.caption(m.why)
