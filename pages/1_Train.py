"""Train: pick data (or upload a file), a variant and hyperparameters; train with live progress."""

import dataclasses
import time

import streamlit as st

from recexplain import dashboard as D
from recexplain import jobs
from recexplain.config import ATTENTION_VARIANTS, PRESETS, ColumnMap, DataConfig, preset
from recexplain.data import DataError, dataset_info
from recexplain.runs import check_run_id

NONE = "(none)"
s = D.page("Train")
sources = list(dict.fromkeys([s.dataset, "synthetic", "ml-100k", "ml-latest-small", "ml-1m"]))
source = st.radio("Data", [*sources, "upload a file"], horizontal=True, key="train_source")


def guess(options: list[str], *words: str) -> int:
    return next((i for i, n in enumerate(options) if n.lower() in words), 0)


if source == "upload a file":
    st.caption(
        f"CSV, TSV or Parquet, at most {jobs.UPLOAD_LIMIT_MB} MB, one row per interaction "
        "(user, item, time, optional rating); titles come from an optional item file."
    )
    types = list(jobs.UPLOAD_TYPES)
    up = st.file_uploader("Interactions file", type=types, key="up_inter")
    up_items = st.file_uploader("Item file (optional)", type=types, key="up_items")
    if up is None:
        st.stop()
    with D.guard("Upload rejected"):
        path = jobs.save_upload(up.name, up.getvalue())
        names, head = jobs.file_columns(path)
        items_path = jobs.save_upload(up_items.name, up_items.getvalue()) if up_items else None
        item_names = jobs.file_columns(items_path)[0] if items_path else []
    st.dataframe(head, hide_index=True, width="stretch")
    cols = st.columns(4)
    user = cols[0].selectbox("User column", names, guess(names, "user_id", "user", "userid"))
    item = cols[1].selectbox("Item column", names, guess(names, "item_id", "item", "movieid"))
    when = cols[2].selectbox("Time column", names, guess(names, "timestamp", "time", "date"))
    rating = cols[3].selectbox("Rating column", [NONE, *names], guess([NONE, *names], "rating"))
    title, genres = "title", None
    if item_names:
        title = st.selectbox("Title column", item_names, guess(item_names, "title", "name"))
        pick = st.selectbox("Genres column", [NONE, *item_names])
        genres = None if pick == NONE else pick
    columns = ColumnMap(user=user, item=item, timestamp=when,
                        rating=None if rating == NONE else rating, item_title=title,
                        item_genres=genres)  # fmt: skip
    data_cfg = DataConfig(dataset="file", path=str(path), columns=columns,
                          items_path=str(items_path) if items_path else None)  # fmt: skip
else:
    data_cfg = DataConfig(dataset=source)

with D.guard("The data did not load"), st.spinner("Loading and checking the data…"):
    try:
        ds = D.get_dataset(data_cfg)
    except DataError:  # a rejected upload leaves nothing in the upload cache
        if source == "upload a file":
            for stored in filter(None, (data_cfg.path, data_cfg.items_path)):
                jobs.discard_upload(stored)
        raise
info = dataset_info(ds)
st.success(D.md(f"{info['name']}: {info['users']:,} users, {info['items']:,} items, "
                f"{info['interactions']:,} interactions, {info['time_min']} to "
                f"{info['time_max']}; fingerprint {info['fingerprint'][:16]}…"))  # fmt: skip
if info["dropped"]:
    st.warning(D.md(f"Rows dropped while loading: {info['dropped']}"))

cols = st.columns(3)
variant = cols[0].selectbox("Attention variant", ATTENTION_VARIANTS, key="train_variant")
names = sorted(PRESETS)
preset_name = cols[1].selectbox("Preset", names, names.index("tiny"), key="train_preset")
model_cfg, train_cfg = preset(preset_name, variant)
with st.expander("Advanced hyperparameters"):
    a = st.columns(5)
    fields_m = ("d_model", "n_blocks", "n_heads", "max_len", "dropout")
    fields_t = ("max_epochs", "patience", "batch_size", "n_negatives", "learning_rate")
    change_m = {f: a[i].number_input(f, value=getattr(model_cfg, f))
                for i, f in enumerate(fields_m)}  # fmt: skip
    change_t = {f: a[i].number_input(f, value=getattr(train_cfg, f))
                for i, f in enumerate(fields_t)}  # fmt: skip
with D.guard("Invalid hyperparameters"):
    model_cfg = dataclasses.replace(model_cfg, **change_m)
    train_cfg = dataclasses.replace(train_cfg, **change_t)
stamp = st.session_state.setdefault("train_stamp", time.strftime("%Y%m%d-%H%M"))
default_id = f"{ds.name}-{variant}-{preset_name}-{stamp}"
run_id = cols[2].text_input("Run id", value=default_id, key=f"run_id_{ds.name}_{variant}")
with D.guard("Invalid run id"):
    check_run_id(run_id)
exists = (s.runs_dir / run_id).exists()
overwrite = st.checkbox("Replace the existing run", key="overwrite") if exists else False
if exists and not overwrite:
    st.warning(D.md(f"A run named {run_id} exists: pick another id or tick 'Replace'."))

if st.button("Train", type="primary", disabled=exists and not overwrite):
    job = jobs.start_training(s.runs_dir, data_cfg, model_cfg, train_cfg, run_id,
                              overwrite=overwrite)  # fmt: skip
    st.session_state["train_job"] = job.key

key = st.session_state.get("train_job")
job = jobs.get_job(key) if key else None
if job is not None and not job.done:
    D.watch(key, cancel="Cancel training (keeps the best epoch so far)")
elif job is not None and job.error:
    st.error(D.md(f"Training failed: {job.error}"))
elif job is not None:
    run = job.result
    test = run.metrics.get("test", {}).get("ndcg@10", {})
    st.success(D.md(f"Saved run {run.run_id}: best epoch {run.metrics.get('best_epoch')} "
                    f"({run.metrics.get('stop_reason')}); test NDCG@10 "
                    f"{test.get('mean', 0):.4f}. It is now listed on Overview, Compare and "
                    "Explain."))  # fmt: skip
