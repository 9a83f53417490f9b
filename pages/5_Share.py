"""Share: a permalink that reopens an explanation, and exports (HTML report, PNG, SVG, JSON)."""

import streamlit as st

from recexplain import dashboard as D
from recexplain import export
from recexplain import workbench as W

s = D.page("Share")
st.caption("The explanation last opened on Explain (or in this page's link); what-if edits are "
           "not part of a link: it always shows the user's recorded history.")  # fmt: skip
runs, ds, split, user, method = D.pick_view(s)
history = split.history(user, "test")
with D.guard("Could not compute recommendations"):
    recs = D.recommendations(runs, history, 10)
test_item = int(split.test[user])
item = D.pick_item(runs[0], recs, [test_item] if test_item else [], user)
with D.guard("Could not explain this item"):
    attrs = D.explanations(runs, history, item, method)

items = runs[0].items
user_id = str(runs[0].user_ids[user])
params = {"dataset": ds.name, "run": ",".join(r.run_id for r in runs), "user": user_id,
          "item": str(items.at[item, "item_id"]), "method": method, "view": "explain"}  # fmt: skip
link = D.permalink("Explain", params)
st.subheader("Permalink")
st.code(link, language=None, wrap_lines=True)
st.link_button("Open this view", link)

held = None
if test_item:
    rank = D.held_out_rank(runs[0], user)
    held = f"{items.at[test_item, 'title']} (rank {rank:.0f} in {runs[0].label})" if rank else None
report = export.build_report(runs, attrs, user=user_id, dataset=ds.name, held_out=held,
                             permalink=link)  # fmt: skip
lines = [export.faithfulness_line(W.faithfulness(r), method) for r in runs]
report.notes = [line for line in lines if line]
for part in report.parts:
    st.markdown(f"**{D.md(part.label)}**: {D.md(part.sentence)}")
charts = export.report_charts(report)
stem = f"recexplain-{ds.name}-user{user_id}-item{params['item']}-{method}"

st.subheader("Export")
st.caption(
    "The HTML report is self-contained and works offline (charts embedded as images, no "
    "scripts): model versions, data fingerprint, metric CIs and the attention caveat included."
)
cols = st.columns(4)
cols[0].download_button("HTML report", lambda: export.report_html(report), f"{stem}.html",
                        "text/html", on_click="ignore", key="dl_html")  # fmt: skip
cols[1].download_button("PNG (heatmap)", lambda: export.chart_png(charts[1]), f"{stem}.png",
                        "image/png", on_click="ignore", key="dl_png")  # fmt: skip
cols[2].download_button("SVG (weights)", lambda: export.chart_svg(charts[0]), f"{stem}.svg",
                        "image/svg+xml", on_click="ignore", key="dl_svg")  # fmt: skip
cols[3].download_button("JSON", export.report_json(report), f"{stem}.json", "application/json",
                        on_click="ignore", key="dl_json")  # fmt: skip
st.caption(export.CAVEAT)
