"""Tests for em_tutorial.experiments (issue 24): the cut shares in plain view, rejection
sampling with one try beside the other methods, accuracy per E-step token, the short table and a figure that
draws only panels with data, from zero."""
import json, warnings
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from em_tutorial.runs import METRIC_COLUMNS
from em_tutorial.figures import plot_accuracy_per_token, plot_comparison
from em_tutorial.experiments import (ALL_METHODS, RESULT_COLUMNS, add_cut_shares, compare, method_config,
                                     read_results, results_table, truncation_note)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT/"results"
SEED0 = RESULTS/"smollm2_arithmetic_nearmiss"/"seed0"   # recorded before the cut shares existed
CUT = ("eval_cut_share", "sample_cut_share")


def _rows():
    "Two rounds of two methods and the base model, one seed, every column the short table reads."
    base = dict(sampler="base", round=0, seed=0, accuracy=0.45, ci_low=0.41, ci_high=0.49, n_eval=500,
                eval_cut_share=0.0, rationale_tokens=12.668, top_letter_share=0.36)
    def row(s, k, acc, tokens, eval_cut, sample_cut, length):
        return dict(sampler=s, round=k, seed=0, accuracy=acc, ci_low=acc - 0.04, ci_high=acc + 0.04,
                    n_eval=500, acceptance_rate=0.5, tokens_spent=tokens, tokens_per_accepted=60.0,
                    mean_rationale_tokens=20.0, eval_cut_share=eval_cut, sample_cut_share=sample_cut,
                    rationale_tokens=length, top_letter_share=0.3)
    return [base, row("rejection", 1, 0.58, 2809, 0.0, 0.0, 12.626),
            row("rejection", 2, 0.68, 2434, 0.0, 0.01, 12.64),
            row("pps", 1, 0.47, 1921, 0.0, 0.22, 12.65), row("pps", 2, 0.08, 2351, 0.83, 0.41, 12.67)]


# --- the cut shares -----------------------------------------------------------------------------------------

def test_cut_shares_are_columns_of_metrics_and_results():
    assert set(CUT) <= set(METRIC_COLUMNS) and set(CUT) <= set(RESULT_COLUMNS)


def test_truncation_note_names_which_evaluation_and_e_step():
    note = truncation_note(_rows())
    assert note.count(".") == 1 and note.endswith(".")                                     # one sentence
    assert "the evaluation of PPS in round 2 (83 %)" in note
    assert "the E-steps of PPS in rounds 1, 2 (up to 41 %)" not in note   # one method: singular
    # 1 %: under 5 %
    assert "the E-step of PPS in rounds 1, 2 (up to 41 %)" in note and "rejection" not in note
    assert truncation_note(_rows()[:3]) is None
    # older rows
    assert truncation_note([{k: v for k, v in r.items() if k not in CUT} for r in _rows()]) is None


def test_committed_results_without_cut_shares_still_read():
    "A results.csv that predates the cut shares reads, tabulates and plots, with those columns empty."
    files = sorted(RESULTS.glob("*/results.csv")) + sorted(RESULTS.glob("*/seed*/results.csv"))
    files = [f for f in files if "eval_cut_share" not in f.read_text().splitlines()[0]]
    assert len(files) >= 5
    for f in files:
        rows = read_results(f)
        assert all(r.get(k) is None for r in rows for k in CUT)
        assert truncation_note(rows) is None
        short, full = results_table(rows), results_table(rows, full=True)
        assert "cut: eval" in short and "cut: E-step" in full
        if len({r.get("seed") for r in rows}) == 1:
            titles = [ax.get_title() for ax in plot_comparison(rows)]
            assert not any(t.startswith("Cut at the token cap") for t in titles)   # no data: no panel
            plt.close("all")


def test_add_cut_shares_from_the_committed_files():
    rows = {(r["sampler"], r["round"]): r
            for r in add_cut_shares(read_results(SEED0/"results.csv"), SEED0)}
    assert rows["pps", 3]["eval_cut_share"] == pytest.approx(413 / 500)   # PPS's round 3 ran into the cap
    assert rows["base", 0]["eval_cut_share"] == 0 and rows["base", 0].get("sample_cut_share") is None
    assert rows["star", 1]["sample_cut_share"] == pytest.approx(5 / 64)
    assert "the evaluation of PPS in round 3 (83 %)" in truncation_note(list(rows.values()))
    demo = add_cut_shares(read_results(RESULTS/"demo_arc_easy"/"results.csv"), RESULTS/"demo_arc_easy")
    assert all(r.get(k) is None for r in demo for k in CUT)   # no per-question files kept


# --- the table ----------------------------------------------------------------------------------------------

def test_short_table_answers_the_question():
    lines = results_table(_rows()).splitlines()
    assert lines[0] == ("| method | round | accuracy (95% CI) | vs base | acceptance "
                        "| E-step tokens, all rounds | cut: eval | cut: E-step |")
    assert lines[3] == ("| rejection sampling | 2 | 0.680 [0.640, 0.720] | +0.230 | 0.50 | 5,243 "
                        "| 0.00 | 0.01 |")
    assert lines[4] == "| PPS | 2 | 0.080 [0.040, 0.120] | -0.370 | 0.50 | 4,272 | 0.83 | 0.41 |"
    # the full one keeps every column
    assert len(results_table(_rows(), full=True).splitlines()[0].split("|")) - 2 > 20


def test_table_with_several_seeds_has_a_row_per_seed():
    rows = _rows() + [dict(r, seed=1, accuracy=r["accuracy"] - 0.1) for r in _rows()]
    table = results_table(rows).splitlines()
    assert table[0].startswith("| method | seed | round |") and len(table) == 2 + 6
    # against seed 1's base
    assert "| PPS | 1 | 2 | -0.020 [0.040, 0.120] | -0.370 | 0.50 | 4,272 |" in "\n".join(table)


# --- the plots ----------------------------------------------------------------------------------------------

def test_comparison_draws_only_panels_with_data_from_zero():
    axs = plot_comparison(_rows())
    titles = {ax.get_title().split(" (")[0]: ax for ax in axs}
    assert "Estimated log p(y*|x)" not in titles and "Hint leakage of accepted hinted traces" not in titles
    assert len(axs) == len(axs[0].figure.axes) == 8   # no empty frame
    # 12.63–12.67 does not fill it
    assert titles["Held-out rationale length before the answer"].get_ylim()[0] == 0
    assert titles["Cut at the token cap"].get_ylim() == (0, 1.05)
    assert titles["Held-out accuracy"].get_ylim() == (0, 1)
    assert titles["Accuracy against E-step tokens spent"] is axs[1]
    plt.close("all")


def test_accuracy_per_token_sums_the_rounds():
    ax = plot_accuracy_per_token(_rows())
    lines = {c.get_label(): c.lines[0] for c in ax.containers}   # one errorbar line per method
    assert list(lines["rejection sampling"].get_xdata()) == [0, 2809, 2809 + 2434]
    assert list(lines["PPS"].get_ydata()) == [0.45, 0.47, 0.08]
    plt.close("all")


def test_plots_refuse_rows_of_several_seeds():
    rows = _rows() + [dict(r, seed=1) for r in _rows()]
    with pytest.raises(ValueError, match="several seeds"): plot_comparison(rows)
    with pytest.raises(ValueError, match="several seeds"): plot_accuracy_per_token(rows)


# --- rejection sampling with one try ------------------------------------------------------------------------

def test_methods_include_rejection_with_one_try():
    assert ALL_METHODS == ("rejection", "rejection_m1", "star", "pps", "pps_iw")
    assert method_config("rejection_m1") == {"sampler": "rejection", "budget": 1}
    assert method_config("pps") == {"sampler": "pps"}
    with pytest.raises(ValueError, match="choose one of: rejection, rejection_m1"): method_config("mcmc")


def test_compare_runs_rejection_m1_in_its_own_folder_and_says_what_was_cut(tmp_path, capsys):
    """Mechanics on a tiny random model: its outputs never state an answer, so they run to the cap and
    compare says so."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare(tmp_path, samplers=("rejection", "rejection_m1"), model="tiny-llama", rounds=1,
                       n_train=2, n_eval=2, budget=3, max_new_tokens=4, chunk_size=2, progress=False)
    assert [(r["sampler"], r["round"]) for r in rows] == [("base", 0), ("rejection", 1), ("rejection_m1", 1)]
    budget = {m: json.loads((tmp_path/m/"config.json").read_text())["budget"]
              for m in ("rejection", "rejection_m1")}
    assert budget == {"rejection": 3, "rejection_m1": 1}
    tries = {m: [json.loads(l)["tries"]
                 for l in (tmp_path/m/"round_1"/"traces.jsonl").read_text().splitlines()]
             for m in ("rejection", "rejection_m1")}
    assert set(tries["rejection_m1"]) == {1} and max(tries["rejection"]) == 3
    assert rows[2]["tokens_spent"] < rows[1]["tokens_spent"]
    assert (all(r["eval_cut_share"] == 1.0 for r in rows)
            and all(r["sample_cut_share"] == 1.0 for r in rows[1:]))
    out = capsys.readouterr().out
    assert "Cut at the token cap" in out and "rejection sampling (M = 1) in round 1 (100 %)" in out
    assert truncation_note(rows) in (tmp_path/"results.md").read_text()
    assert (tmp_path/"eval"/"rejection_m1_round1.jsonl").exists()
    metrics = json.loads((tmp_path/"rejection_m1"/"round_1"/"metrics.json").read_text())
    assert metrics["sample_cut_share"] == 1.0 and metrics["eval"]["cut_share"] == 1.0
    header = (tmp_path/"rejection_m1"/"metrics.csv").read_text().splitlines()[0].split(",")
    assert set(CUT) <= set(header)


def test_cli_compare_and_demo_take_methods():
    from em_tutorial.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert sub["compare"].parse_args(["--out", "x"]).samplers == list(ALL_METHODS)
    assert sub["demo"].parse_args([]).samplers == ["rejection", "star", "pps"]   # the demo's list is kept
    assert (sub["demo"].parse_args(["--samplers", "rejection", "rejection_m1"]).samplers
            == ["rejection", "rejection_m1"])
