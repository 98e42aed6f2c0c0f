"""steper-bench leaderboard: compare students, methods and teachers; see why a model fails.

Run with `steper-bench leaderboard --db results.duckdb` (or `streamlit run app.py -- --db PATH`,
or STEPER_DB=PATH). The results file is opened read-only, one short connection per cached query;
the cache is keyed by the file's modification time, so a new eval shows up on the next rerun.
"""

from __future__ import annotations

import json
import re
import sys

import altair as alt
import duckdb
import pandas as pd
import streamlit as st

from steper_bench.evaluation import paper
from steper_bench.evaluation.report import leaderboard_markdown
from steper_bench.evaluation.store import ABILITIES, StoreError, connect
from steper_bench.leaderboard_app import queries as q

OPEN_WAIT_S = 5.0  # while an eval is writing the file, wait this long for its lock


# -- data access (cached per file version) -------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=256)
def cached(db: str, stamp: tuple[int, int], query: str, *args):
    """Run queries.<query>(con, *args) on a fresh read-only connection. `stamp` is only part of
    the cache key: when the file changes, the key changes."""
    con = connect(db, read_only=True, wait_s=OPEN_WAIT_S)
    try:
        return getattr(q, query)(con, *args)
    finally:
        con.close()


@st.cache_data(show_spinner=False, max_entries=16)
def cached_markdown(db: str, stamp: tuple[int, int], filters: q.Filters) -> str:
    """The paper-layout Markdown of the filtered runs: the same code as `steper-bench report`."""
    con = connect(db, read_only=True, wait_s=OPEN_WAIT_S)
    try:
        return leaderboard_markdown(con, filters)
    finally:
        con.close()


@st.cache_data(show_spinner=False, max_entries=16)
def cached_paper(db: str, stamp: tuple[int, int]) -> dict:
    """The paper's tables (`steper-bench report --paper`): every run in the file, unfiltered."""
    con = connect(db, read_only=True, wait_s=OPEN_WAIT_S)
    try:
        return paper.paper_tables(con)
    finally:
        con.close()


# -- page ----------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="steper-bench leaderboard", layout="wide")
    st.title("StepER benchmark leaderboard")
    path = q.resolve_db_path(sys.argv[1:])
    if path is None:
        st.info("No results database given. Start with `steper-bench leaderboard --db results.duckdb` or set STEPER_DB.")
        st.stop()
    if not path.exists():
        st.warning(
            f"No results database at `{path}` yet. Create it with "
            f"`steper-bench eval RECIPE --db {path}`, then reload this page."
        )
        st.stop()
    db, stamp = str(path), q.db_stamp(path)
    try:
        options = cached(db, stamp, "filter_options")
    except StoreError as e:
        st.warning(str(e))
        st.stop()
    except duckdb.Error as e:
        st.error(f"`{path}` is not a readable steper-bench results database: {e}")
        st.stop()
    if not options["datasets"]:
        st.info(f"`{path}` holds no finished runs yet. Run `steper-bench eval RECIPE --db {path}`.")
        st.stop()

    filters, with_ci, per_run = sidebar(options)
    runs = cached(db, stamp, "run_metrics", filters)
    st.caption(f"`{path}` · {len(runs)} finished runs shown · EM / F1 / Acc in %, judge scores 1-5")
    if runs.empty:
        st.info("No runs match these filters.")
        st.stop()
    datasets = sorted(runs["dataset"].unique())
    systems = q.system_table(runs, datasets)
    board, charts, explorer, paper_view = st.tabs(["Leaderboard", "Charts", "Sample explorer", "Paper"])
    with board:
        leaderboard_tab(db, stamp, runs, datasets, with_ci, per_run, filters)
    with charts:
        charts_tab(db, stamp, runs, systems, filters)
    with explorer:
        explorer_tab(db, stamp, runs)
    with paper_view:
        paper_tab(db, stamp)


def sidebar(options: dict) -> tuple[q.Filters, bool, bool]:
    sb = st.sidebar
    sb.header("Filters")
    filters = q.Filters(
        datasets=tuple(sb.multiselect("Dataset", options["datasets"], placeholder="all datasets")),
        methods=tuple(sb.multiselect("Method", options["methods"], placeholder="all methods")),
        families=tuple(sb.multiselect("Model family", options["families"], placeholder="all families")),
        sizes=tuple(sb.multiselect("Size", options["sizes"], placeholder="all sizes")),
        include_failed=sb.toggle("Include failed runs (every question failed)", value=False, key="include_failed"),
    )
    with_ci = sb.toggle("Show 95% bootstrap intervals", value=False, key="with_ci")
    per_run = sb.radio("Rows", ["one per system (paper layout)", "one per run"], index=0) == "one per run"
    return filters, with_ci, per_run


def _number_config(table: pd.DataFrame) -> dict:
    cfg = {}
    for col in table.columns:
        if col in ("model", "method"):
            cfg[col] = st.column_config.TextColumn(col, pinned=True)
        elif col == "size (B)":
            cfg[col] = st.column_config.NumberColumn(col, format="%g")
        elif col.startswith("judge") or col in ("steps", "latency (s)"):
            cfg[col] = st.column_config.NumberColumn(col, format="%.2f")
        elif pd.api.types.is_float_dtype(table[col]):
            cfg[col] = st.column_config.NumberColumn(col, format="%.1f")
    return cfg


def leaderboard_tab(db: str, stamp, runs: pd.DataFrame, datasets: list[str], with_ci: bool, per_run: bool,
                    filters: q.Filters) -> None:
    table = q.run_table(runs, with_ci) if per_run else q.system_table(runs, datasets, with_ci)
    st.subheader("Main table")
    st.dataframe(table, hide_index=True, column_config=_number_config(table), key="main_table")
    st.caption(
        "Click a header to sort. Per system, the latest run per dataset counts; avg = mean over the "
        "datasets shown. Intervals: 95% percentile bootstrap over questions."
    )
    left, right = st.columns(2)
    left.download_button("Download CSV", table.to_csv(index=False), "leaderboard.csv", "text/csv")
    markdown = cached_markdown(db, stamp, filters)
    right.download_button("Download Markdown (paper layout)", markdown, "leaderboard.md", "text/markdown")


def charts_tab(db: str, stamp, runs: pd.DataFrame, systems: pd.DataFrame, filters: q.Filters) -> None:
    tooltip = ["model", "method", "teacher", "size (B)", "avg EM", "avg F1", "avg Acc", "latency (s)"]
    left, right = st.columns(2)
    with left:
        st.subheader("Accuracy vs student size")
        sized = systems.dropna(subset=["size (B)", "avg Acc"])
        if sized.empty:
            st.caption("No run with a known model size.")
        else:
            st.altair_chart(
                alt.Chart(sized)
                .mark_line(point=True)
                .encode(
                    x=alt.X("size (B):Q", scale=alt.Scale(type="log"), title="student size (B parameters)"),
                    y=alt.Y("avg Acc:Q", title="avg Acc (%)"),
                    color="method:N",
                    tooltip=tooltip,
                ),
                width="stretch",
            )
    with right:
        st.subheader("Accuracy vs latency")
        timed = systems.dropna(subset=["latency (s)", "avg Acc"])
        st.altair_chart(
            alt.Chart(timed)
            .mark_point(filled=True, size=80)
            .encode(
                x=alt.X("latency (s):Q", title="mean latency per question (s)"),
                y=alt.Y("avg Acc:Q", title="avg Acc (%)"),
                color="method:N",
                tooltip=tooltip,
            ),
            width="stretch",
        )
    left, right = st.columns(2)
    with left:
        st.subheader("Reasoning ability scores (LLM judge)")
        scores = q.ability_scores(runs)
        if scores.empty:
            st.caption("No judge scores stored yet (`steper-bench judge`).")
        else:
            st.altair_chart(
                alt.Chart(scores)
                .mark_bar()
                .encode(
                    x=alt.X("ability:N", sort=list(ABILITIES)),
                    xOffset="method:N",
                    y=alt.Y("score:Q", scale=alt.Scale(domain=[0, 5]), title="mean score (1-5)"),
                    color="method:N",
                    tooltip=["method", "ability", alt.Tooltip("score:Q", format=".2f")],
                ),
                width="stretch",
            )
    with right:
        st.subheader("Sigma trajectories (training)")
        sigma = cached(db, stamp, "sigma_history", filters)
        if sigma.empty:
            st.caption("No sigma history stored for the runs shown (difficulty-aware students only).")
        else:
            run = st.selectbox("Trained run", sorted(sigma["run"].unique()), key="sigma_run")
            st.altair_chart(
                alt.Chart(sigma[sigma["run"] == run])
                .mark_line()
                .encode(x="step:Q", y=alt.Y("sigma:Q", title="sigma (learned, per step kind)"), color="kind:N",
                        tooltip=["kind", "step", "sigma"]),
                width="stretch",
            )


# -- the paper's tables ---------------------------------------------------------------------------

# table -> (figure kind, x field) for the tables that have one; y is always Acc (%)
PAPER_FIGURES = {"main": ("bar", "method"), "baselines": ("bar", "framework"), "step_ablation": ("bar", "method"),
                 "weighting": ("bar", "method"), "size_scaling": ("line", "size_b"), "ood": ("bar", "trained_on"),
                 "data_scaling": ("line", "train_questions"), "latency": ("point", "latency_s")}


def paper_tab(db: str, stamp) -> None:
    st.caption("The paper's tables for every run in the file (sidebar filters do not apply). Rows marked "
               "missing are cells of the paper's layout with no finished run yet. Same as "
               "`steper-bench report --paper`.")
    tables = cached_paper(db, stamp)
    for key in paper.KEYS:
        rows = tables[key]
        st.subheader(paper.TITLES[key])
        if not rows:
            st.caption("Nothing of this kind in the results file yet.")
            continue
        frame = pd.DataFrame(rows).drop(columns=["run_id"], errors="ignore")
        st.dataframe(frame.map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v),
                     hide_index=True, width="stretch", key=f"paper_{key}")
        st.download_button(f"Download {key}.csv", paper.csv_text(rows), file_name=f"{key}.csv", mime="text/csv",
                           key=f"paper_csv_{key}")
        _paper_figure(key, frame[~frame["missing"]])


def _paper_figure(key: str, frame: pd.DataFrame) -> None:
    kind, x = PAPER_FIGURES[key]
    frame = frame.dropna(subset=[c for c in (x, "acc") if c in frame.columns])
    if frame.empty or x not in frame.columns:
        return
    base = alt.Chart(frame)
    mark = {"bar": base.mark_bar(), "line": base.mark_line(point=True), "point": base.mark_point(filled=True)}[kind]
    enc = {"x": alt.X(f"{x}:{'N' if kind == 'bar' else 'Q'}", title=x), "y": alt.Y("acc:Q", title="Acc (%)"),
           "color": "method:N", "tooltip": [c for c in ("method", "model", "dataset", x, "acc") if c in frame]}
    if kind == "bar" and "dataset" in frame:
        enc["column"] = alt.Column("dataset:N")
    st.altair_chart(mark.encode(**enc), width="content" if "column" in enc else "stretch")


# -- sample explorer -----------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|$~])")


def md(text) -> str:
    """Dataset and model text shown literally (no markdown, no LaTeX from '$')."""
    return _MD_SPECIAL.sub(r"\\\1", "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text))


def explorer_tab(db: str, stamp, runs: pd.DataFrame) -> None:
    labels = {r["run_id"]: q.run_label(r) for _, r in runs.iterrows()}
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="explore_run")
    with st.expander("Why answers fail in this run", expanded=False):
        st.dataframe(cached(db, stamp, "failure_breakdown", run_id), hide_index=True)
    c1, c2 = st.columns([3, 1])
    search = c1.text_input("Search questions (text or id)", key="explore_search")
    only_wrong = c2.toggle("Only wrong answers", key="explore_wrong")
    picks = cached(db, stamp, "questions", run_id, search, only_wrong)
    if picks.empty:
        st.info("No question matches.")
        return
    texts = dict(zip(picks["question_id"], picks["question"]))
    qid = st.selectbox(
        f"Question ({len(picks)} shown)",
        list(texts),
        format_func=lambda x: f"{x}: {texts[x][:100]}",
        key="explore_question",
    )
    dataset = runs.loc[runs["run_id"] == run_id, "dataset"].iloc[0]
    others = [r for r in labels if r != run_id and runs.loc[runs["run_id"] == r, "dataset"].iloc[0] == dataset]
    other = st.selectbox(
        "Compare with", [None] + others, format_func=lambda r: "(none)" if r is None else labels[r], key="explore_other"
    )
    if other is None:
        show_sample(st.container(), labels[run_id], cached(db, stamp, "sample_view", run_id, qid))
        return
    left, right = st.columns(2)
    show_sample(left, labels[run_id], cached(db, stamp, "sample_view", run_id, qid))
    show_sample(right, labels[other], cached(db, stamp, "sample_view", other, qid))


def _json_list(value) -> list:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


def show_sample(box, label: str, view: q.SampleView | None) -> None:
    box.markdown(f"#### {md(label)}")
    if view is None:
        box.info("This run has no answer for this question.")
        return
    s = view.sample
    box.markdown(f"**Question:** {md(s['question'])}")
    box.markdown(f"**Gold:** {' | '.join(md(g) for g in _json_list(s['gold']))}")
    verdict = "correct" if s["acc"] >= 1 else "wrong"
    box.markdown(
        f"**Prediction:** {md(s['prediction'])} ({verdict}: EM {s['em']:.0f} · F1 {s['f1']:.2f} · Acc {s['acc']:.0f})"
    )
    box.caption(
        f"stopped: {s['stop_reason']} after {s['steps_used']} steps · latency {s['latency_s']:.2f} s · "
        f"supporting recall {_fmt(s['sp_recall'])} · answer in retrieval {_fmt(s['answer_in_retrieval'])}"
    )
    for step in view.steps:
        show_step(box, step, view)


def _fmt(v) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v:.2f}"


def show_step(box, step: dict, view: q.SampleView) -> None:
    box.markdown(f"**Step {step['step']}** · query: _{md(step['query'])}_")
    retrieved = _json_list(step["retrieved_pids"])
    new = set(_json_list(step["new_pids"]))
    paras = [view.paragraphs.get(pid, {"title": pid, "text": "(not stored)", "is_supporting": False}) for pid in retrieved]
    n_sup = sum(bool(p["is_supporting"]) for p in paras)
    with box.expander(f"Retrieved {len(paras)} paragraphs ({n_sup} supporting)"):
        for pid, p in zip(retrieved, paras):
            tags = [":green-background[supporting]"] if p["is_supporting"] else []
            tags += [":blue-background[new]"] if pid in new else []
            st.markdown(" ".join([*tags, f"**{md(p['title'])}**: {md(p['text'])}"]))
    error = step.get("error")
    if isinstance(error, str) and error:
        box.warning(f"step failed: {error}")
    box.markdown(f"> {md(step['reasoning']) or '(no sentence)'}")
    judged = view.judgments[view.judgments["step"] == step["step"]] if not view.judgments.empty else []
    for _, j in judged.iterrows() if len(judged) else []:
        if j["status"] == "ok":
            box.caption(f"judge {j['ability']} ({j['judge_model']}): {j['score']}/5. {md(j['rationale'])}")
        else:
            box.caption(f"judge {j['ability']} ({j['judge_model']}) failed: {md(j['error'])}")


if __name__ == "__main__":  # streamlit runs the file as __main__; importing it renders nothing
    main()
