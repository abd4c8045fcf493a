"""The protocol on a user's prediction files: records, resume after a kill, leaderboard, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from ._helpers import ANGLES, gt_star, write_predictions

ENTRIES = ("tinyA", "tinyB")
SEEDS = (0, 1)
TEMPLATE = "{entry}/seed{seed}/half{half}.star"


@pytest.fixture(scope="module")
def user_preds(tiny_bench, tmp_path_factory):
    """Prediction files of a 'method' whose errors grow with the seed (so that the std is not 0)."""
    root = tmp_path_factory.mktemp("preds")
    for i, entry in enumerate(ENTRIES):
        for seed in SEEDS:
            for h in (0, 1):
                n = len(gt_star(tiny_bench, entry, h).particles)
                rng = np.random.default_rng(100 * i + 10 * seed + h)
                out = root / TEMPLATE.format(entry=entry, seed=seed, half=h)
                out.parent.mkdir(parents=True, exist_ok=True)
                write_predictions(tiny_bench, entry, h, out, rng.uniform(0, 20 + 30 * seed, n), seed=seed)
    return root


def _run_args(bench, preds, outdir, extra=()):
    return [
        "run",
        "method=MyNet",
        f"predictions={preds}/{TEMPLATE}",
        f"entries=[{','.join(ENTRIES)}]",
        f"seeds=[{','.join(map(str, SEEDS))}]",
        f"outdir={outdir}",
        f"benchmark_dir={bench}",
        "n_cpus=1",
        *extra,
    ]


class _Counting:
    """Wraps evaluate: counts calls and raises KeyboardInterrupt (a kill) on call number ``die_at``."""

    def __init__(self, fn, die_at=None):
        self.fn, self.die_at, self.calls = fn, die_at, []

    def __call__(self, *a, **kw):
        self.calls.append((kw.get("half0PredsFname"), kw.get("half1PredsFname")))
        if self.die_at is not None and len(self.calls) == self.die_at:
            raise KeyboardInterrupt("simulated kill")
        return self.fn(*a, **kw)


@pytest.fixture(scope="module")
def protocol_out(tiny_bench, user_preds, tmp_path_factory):
    """Run the protocol, killed during its 3rd evaluation, then continued; return (outdir, log)."""
    import cesped.evaluation.evaluate as ev_mod
    from cesped.benchmark.__main__ import main

    outdir = tmp_path_factory.mktemp("protocol")
    real = ev_mod.evaluate
    log = {}
    try:
        ev_mod.evaluate = first = _Counting(real, die_at=3)  # A seed 0, A seed 1, then killed
        with pytest.raises(KeyboardInterrupt):
            main(_run_args(tiny_bench, user_preds, outdir))
        log["first"] = first.calls
        done = sorted((outdir / "records").rglob("seed*.json"))
        log["after_kill"] = {p: p.read_bytes() for p in done}
        log["after_kill_mtime"] = {p: p.stat().st_mtime_ns for p in done}
        ev_mod.evaluate = second = _Counting(real)
        assert main(_run_args(tiny_bench, user_preds, outdir)) == 0
        log["second"] = second.calls
        ev_mod.evaluate = third = _Counting(real)
        assert main(_run_args(tiny_bench, user_preds, outdir)) == 0
        log["third"] = third.calls
    finally:
        ev_mod.evaluate = real
    return outdir, log


def test_protocol_writes_records_and_resumes_without_redoing(protocol_out, tiny_bench, user_preds):
    from cesped.benchmark.records import SCHEMA_VERSION, entry_checksum, read_record

    outdir, log = protocol_out
    method_records = sorted((outdir / "records" / "MyNet").rglob("seed*.json"))
    assert [p.relative_to(outdir / "records" / "MyNet").as_posix() for p in method_records] == [
        "tinyA/seed0.json",
        "tinyA/seed1.json",
        "tinyB/seed0.json",
        "tinyB/seed1.json",
    ]
    # the kill lost only the evaluation in progress: the two finished records are untouched ...
    assert len(log["first"]) == 3 and len(log["after_kill"]) == 2
    for p, data in log["after_kill"].items():
        assert p.read_bytes() == data and p.stat().st_mtime_ns == log["after_kill_mtime"][p]
    # ... the second run evaluated only what was missing (tinyA's random poses and floor, tinyB x 2
    # seeds + random + floor)
    assert len(log["second"]) == 6
    assert not any("tinyA/seed" in str(c[0]) for c in log["second"])
    assert log["third"] == []  # nothing left to do
    for entry in ENTRIES:
        for ref_method in ("random-poses", "image-limited-floor"):
            rpath = outdir / "records" / ref_method / entry / "seed0.json"
            assert rpath.is_file()
            # the reference rows' prediction files relative to the outdir, as the methods' are
            r = read_record(rpath)
            assert str(outdir) not in json.dumps({k: v for k, v in r.items() if k != "command"})
            assert r["predictions"]["half0"] == f"runs/{ref_method}/{entry}/predictions_0.star"
        for seed in SEEDS:
            r = read_record(outdir / "records" / "MyNet" / entry / f"seed{seed}.json")
            assert r["schema_version"] == SCHEMA_VERSION and r["entry"] == entry and r["seed"] == seed
            assert r["method"] == {"name": "MyNet", "kind": "predictions", "config": {}}
            assert r["entry_checksum"] == entry_checksum(tiny_bench / entry)
            assert r["predictions"]["half1"] == str(
                user_preds / TEMPLATE.format(entry=entry, seed=seed, half=1)
            )
            assert r["timings_s"]["train"] is None and r["timings_s"]["evaluate"] > 0
            # no machine path of the run's directory (but in the command line, kept as typed)
            assert str(outdir) not in json.dumps({k: v for k, v in r.items() if k != "command"})
            assert r["cesped"]["version"] and r["hardware"]["cpu_count"] >= 1
            assert r["command"][:4] == ["python", "-m", "cesped.benchmark", "run"]
            # the record's angular metrics are the Evaluator's, consistent with evaluate's
            m, a = r["metrics"], r["angular"]
            assert m["MAnE_deg"] == pytest.approx(0.5 * (a["half0"]["MAnE"] + a["half1"]["MAnE"]), rel=1e-12)
            assert 0 < m["MAnE"] < 60 and m["PCC(GT,V)"] is not None


def test_leaderboard_numbers_equal_the_records(protocol_out, tiny_bench, tmp_path):
    from cesped.benchmark.__main__ import main
    from cesped.benchmark.leaderboard import COLUMNS, build_leaderboard

    outdir, _ = protocol_out
    board = build_leaderboard([outdir / "records"], benchmark_dir=tiny_bench)
    md = board.markdown()
    for entry in ENTRIES:
        recs = [
            json.loads((outdir / "records" / "MyNet" / entry / f"seed{s}.json").read_text()) for s in SEEDS
        ]
        row = next(r for r in board.tables[entry] if r.method == "MyNet")
        assert row.seeds == list(SEEDS)
        line = next(
            ln for ln in md.splitlines() if ln.startswith("| MyNet |") and f"## {entry}" in _section(md, ln)
        )
        for key, _, fmt in COLUMNS:
            vals = np.array([r["metrics"][key] for r in recs], dtype=float)
            mean, std = vals.mean(), vals.std(ddof=1)
            assert row.stats[key][0] == pytest.approx(mean, rel=1e-12)
            assert row.stats[key][1] == pytest.approx(std, rel=1e-12)
            assert f"{mean:{fmt}} ± {std:{fmt}}" in line
        assert "| 2 ⚠ |" in line  # 2 seeds < 3
        assert any("fewer than the protocol's minimum of 3" in f for f in row.flags)
        rnd = next(r for r in board.tables[entry] if r.method == "random poses")
        rrec = json.loads((outdir / "records" / "random-poses" / entry / "seed0.json").read_text())
        assert rnd.kind == "reference" and rnd.stats["MAnE"][0] == rrec["metrics"]["MAnE"]
        assert rrec["metrics"]["MAnE"] > 90  # random rotations: far from the truth
    # the command line writes both pages
    assert (
        main(["table", str(outdir / "records"), "--out", str(tmp_path), "--benchmarkDir", str(tiny_bench)])
        == 0
    )
    assert (tmp_path / "leaderboard.md").read_text() == md
    page = (tmp_path / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "random poses (reference)" in page and "tinyB" in page
    from cesped.evaluation.style import CSS

    assert CSS in page  # the evaluation report's style sheet


def _section(md: str, line: str) -> str:
    """The '## entry' heading above ``line``."""
    head = ""
    for ln in md.splitlines():
        if ln.startswith("## "):
            head = ln
        if ln == line:
            return head
    return head


def test_random_row_computed_when_no_record(protocol_out, tiny_bench):
    """Without its record, the random-poses row is computed: the same seeded poses, the same numbers."""
    from cesped.benchmark.leaderboard import build_leaderboard

    outdir, _ = protocol_out
    board = build_leaderboard([outdir / "records" / "MyNet" / "tinyB"], benchmark_dir=tiny_bench, n_cpus=1)
    row = next(r for r in board.tables["tinyB"] if r.method == "random poses")
    rec = json.loads((outdir / "records" / "random-poses" / "tinyB" / "seed0.json").read_text())
    assert row.flags == ["computed for this table (no record)"]
    for key in ("MAnE", "wMAnE", "PCC(GT,V)", "FSCR0.143(GT,V)"):
        assert row.stats[key][0] == pytest.approx(rec["metrics"][key], rel=1e-12)
    none = build_leaderboard([outdir / "records" / "MyNet" / "tinyB"], compute_random=False)
    assert not any(r.method == "random poses" for r in none.tables["tinyB"])
    assert "tinyB: no random-poses row" in none.markdown()


def test_reference_rows_paper_and_floor(protocol_out, tmp_path):
    """A real entry's table has the paper's published Image2Sphere row; a floor record is a reference row."""
    from cesped.benchmark.leaderboard import build_leaderboard, paper_rows
    from cesped.benchmark.records import write_record

    outdir, _ = protocol_out
    base = json.loads((outdir / "records" / "MyNet" / "tinyA" / "seed0.json").read_text())
    real = copy.deepcopy(base)
    real["entry"], real["entry_checksum"] = "10280", "sha256:" + "0" * 64
    write_record(tmp_path / "a" / "seed0.json", real)
    floor = copy.deepcopy(base)
    floor["method"] = {"name": "image-limited floor", "kind": "floor", "config": {}}
    write_record(tmp_path / "b" / "seed0.json", floor)
    board = build_leaderboard([tmp_path], verify_entries=True, compute_random=False)
    paper = next(r for r in board.tables["10280"] if r.kind == "published")
    pub = paper_rows()["rows"]["10280"]
    assert paper.stats["MAnE"][0] == 17.8 and paper.stats["wMAnE"][0] == 14.9
    assert paper.stats["FSCR0.143(GT,V)"][0] == 4.3
    assert paper.stats["dPCC"][0] == pytest.approx(pub["PCC(GT0,GT1)"] - pub["PCC(GT,V)"])
    md = board.markdown()
    assert "| Image2Sphere (CESPED paper, published) | — | 17.80 | 14.90 |" in md
    assert "results/original_results.csv" in md  # the source is named
    assert "10280: no random-poses row" in md
    assert any(r.kind == "floor" and r.method == "image-limited floor" for r in board.tables["tinyA"])
    assert "image-limited floor (floor)" in md
    # every real entry of the list is shipped, with its columns
    rows = paper_rows()["rows"]
    assert rows["10648"]["MAnE"] == 13.3 and rows["consensus_10648"]["wMAnE"] == 8.1
    assert rows["simulated_10648"]["MAnE"] == 6.0 and rows["10399"]["FSCR0.143(GT,V)"] == 4.0
    assert len(rows) == 10 and all(len(v) == 11 for v in rows.values())


def test_floor_record_is_the_floor_evaluated_like_a_method(protocol_out, tiny_bench):
    """The protocol's floor record holds the floor's own poses: its angular error equals the floor
    computed independently (evaluation.floor, pooled over both halves), far below the random row."""
    from cesped.benchmark.leaderboard import build_leaderboard
    from cesped.evaluation.floor import floor_reference

    outdir, _ = protocol_out
    board = build_leaderboard([outdir / "records"], benchmark_dir=tiny_bench, compute_random=False)
    for entry in ENTRIES:
        r = json.loads((outdir / "records" / "image-limited-floor" / entry / "seed0.json").read_text())
        assert r["method"]["kind"] == "floor" and r["seed"] == 0
        ref = floor_reference(tiny_bench / entry)
        # equal up to the Euler-angle round trip of the star (~1e-6 deg near 0, where arccos is steep)
        assert r["metrics"]["MAnE_deg"] == pytest.approx(ref["MAnE_deg"], abs=1e-4)
        med = ref["median_angular_error_deg"]
        assert r["metrics"]["median_angular_error_deg"] == pytest.approx(med, abs=1e-4)
        for h in (0, 1):
            assert r["method"]["config"]["per_half"][f"half{h}"]["MAnE_deg"] == pytest.approx(
                ref["per_half"][f"half{h}"]["MAnE_deg"]
            )
        # confidence 1: the weighted error is the plain one
        assert r["metrics"]["wMAnE"] == pytest.approx(r["metrics"]["MAnE"], rel=1e-9)
        rnd = json.loads((outdir / "records" / "random-poses" / entry / "seed0.json").read_text())
        assert r["metrics"]["MAnE"] < rnd["metrics"]["MAnE"] / 4
        row = next(x for x in board.tables[entry] if x.method == "image-limited floor")
        assert row.kind == "floor" and row.stats["MAnE"][0] == r["metrics"]["MAnE"]
    assert "| image-limited floor (floor) |" in board.markdown()


def test_no_floor_record_without_a_true_map(tiny_bench, user_preds, tmp_path, capsys):
    """An entry without gt_map.mrc (a real entry) gets no floor record, said in the log;
    floor_reference=false: none."""
    import shutil

    from cesped.benchmark.__main__ import main

    bench = tmp_path / "bench"
    shutil.copytree(tiny_bench / "tinyA", bench / "tinyA")
    (bench / "tinyA" / "gt_map.mrc").unlink()
    args = [
        "run",
        "method=MyNet",
        f"predictions={user_preds}/{TEMPLATE}",
        "entries=[tinyA]",
        "seeds=[0]",
        f"benchmark_dir={bench}",
        "n_cpus=1",
        "random_reference=false",
    ]
    assert main([*args, f"outdir={tmp_path / 'out'}"]) == 0
    assert "tinyA: no true map (gt_map.mrc), no image-limited floor record" in capsys.readouterr().out
    assert not (tmp_path / "out" / "records" / "image-limited-floor").exists()
    assert main([*args, f"outdir={tmp_path / 'out2'}", "floor_reference=false"]) == 0
    assert "image-limited floor" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out2" / "records").iterdir()) == ["MyNet"]


def _copy_record(src: Path, dst: Path, edit) -> Path:
    r = json.loads(src.read_text())
    edit(r)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(r))
    return dst


def test_leaderboard_refuses_bad_records(protocol_out, tiny_bench, tmp_path, capsys):
    from cesped.benchmark.__main__ import main
    from cesped.benchmark.leaderboard import build_leaderboard

    outdir, _ = protocol_out
    src = outdir / "records" / "MyNet" / "tinyA" / "seed0.json"
    kw = dict(benchmark_dir=tiny_bench, compute_random=False)

    corrupt = tmp_path / "corrupt" / "seed0.json"
    corrupt.parent.mkdir()
    corrupt.write_text(src.read_text()[:-40])
    with pytest.raises(ValueError, match=f"{corrupt}: corrupt results record"):
        build_leaderboard([corrupt], **kw)

    def other_schema(r):
        r["schema_version"] = 99

    bad = _copy_record(src, tmp_path / "schema" / "seed0.json", other_schema)
    with pytest.raises(ValueError, match="schema_version 99"):
        build_leaderboard([bad], **kw)

    def other_entry_version(r):
        r["entry_checksum"] = "sha256:" + "1" * 64

    stale = _copy_record(src, tmp_path / "stale" / "seed0.json", other_entry_version)
    with pytest.raises(ValueError, match="entry tinyA: records .* were made on entry version sha256:1111"):
        build_leaderboard([stale], **kw)
    with pytest.raises(ValueError, match="records of different entry versions"):
        build_leaderboard(
            [stale, outdir / "records" / "MyNet" / "tinyA" / "seed1.json"], verify_entries=False
        )

    def old_major(r):
        r["cesped"]["version"] = "25.1.0"
        r["seed"] = 7

    old = _copy_record(src, tmp_path / "old" / "seed7.json", old_major)
    with pytest.raises(ValueError, match="different cesped major versions"):
        build_leaderboard([old, outdir / "records" / "MyNet"], **kw)
    board = build_leaderboard([old, outdir / "records" / "MyNet"], allow_mixed_versions=True, **kw)
    assert any("different cesped major versions" in n for n in board.notes)
    with pytest.raises(ValueError, match="also in"):
        build_leaderboard([src, src], **kw)
    # the command line names the file and exits with status 2
    assert main(["table", str(corrupt)]) == 2
    assert f"{corrupt}: corrupt results record" in capsys.readouterr().err


def test_protocol_refuses_a_record_of_another_entry_version(protocol_out, tiny_bench, user_preds, tmp_path):
    import shutil

    from cesped.benchmark.__main__ import parse_run_args
    from cesped.benchmark.protocol import run_protocol

    outdir, _ = protocol_out
    out2 = tmp_path / "out"
    shutil.copytree(outdir / "records", out2 / "records")
    rp = out2 / "records" / "MyNet" / "tinyB" / "seed1.json"
    r = json.loads(rp.read_text())
    r["entry_checksum"] = "sha256:" + "2" * 64
    rp.write_text(json.dumps(r))
    with pytest.raises(ValueError, match=f"{rp}: record of another version of entry tinyB"):
        run_protocol(parse_run_args(_run_args(tiny_bench, user_preds, out2)[1:]))


@pytest.mark.parametrize(
    "args, exc, match",
    [
        (["entries=[tinyA]", "seeds=[0]", "seed=3"], ValueError, "seed is set by the protocol.*use seeds="),
        (["entries=[tinyA]", "seeds=[0]", "halfset=1"], ValueError, "halfset is set by the protocol"),
        (["seeds=[0]"], ValueError, r"entries=\[...\] is required"),
        (["entries=[tinyA]", "seeds=[a]"], ValueError, "seeds: expected a list of integers"),
        (["entries=[tinyA]", "seeds=[0,0]"], ValueError, "duplicated seeds"),
        (["entries=[tinyA]", "seeds=[0]", "predictions=p.star"], ValueError, "method: name your method"),
        (
            ["entries=[tinyA]", "seeds=[0]", "method=M", "predictions=p.star"],
            ValueError,
            "must contain {half}",
        ),
        (["entries=[a,b]", "seeds=[0]", "method=M", "predictions=p{half}"], ValueError, "need {entry}"),
        (["entries=[a]", "seeds=[0]", "method=M", "predictions=p{half}", "x.y=1"], ValueError, "unused with"),
        (["entries=[a]", "seeds=[0]", "method=random poses"], ValueError, "reserved"),
        (["entries=[a]", "seeds=[0]", "method=image-limited floor"], ValueError, "reserved"),
        (["entries=[a]", "seeds=[0]", "floor_reference=2"], ValueError, "floor_reference: expected true"),
        (["entries=[a]", "seeds=[0]", "save_maps=maybe"], ValueError, "save_maps: expected true or false"),
        (["entries=[a]", "seeds=[0]", "method_config=/no/such.json"], FileNotFoundError, "method_config"),
        (["entries=[a]", "seeds=[0]", "oops"], ValueError, "expected key=value"),
    ],
)
def test_run_arguments_errors(args, exc, match):
    from cesped.benchmark.__main__ import parse_run_args

    with pytest.raises(exc, match=match):
        parse_run_args(args)


def test_run_unknown_entry_and_missing_predictions(tiny_bench, tmp_path, capsys):
    from cesped.benchmark.__main__ import main

    args = [
        "run",
        "method=M",
        f"predictions={tmp_path}/{{half}}.star",
        "seeds=[0]",
        f"benchmark_dir={tiny_bench}",
    ]
    assert main([*args, "entries=[no_such_entry]", f"outdir={tmp_path / 'o'}"]) == 2
    assert "'no_such_entry'" in capsys.readouterr().err
    assert main([*args, "entries=[tinyA]", f"outdir={tmp_path / 'o'}"]) == 2
    assert (
        f"predictions: {tmp_path}/0.star (entry tinyA, seed 0, half-set 0) not found"
        in capsys.readouterr().err
    )


def test_refine_records_raw_and_refined_metrics_and_resumes(tiny_bench, user_preds, tmp_path, monkeypatch):
    """refine=true: each half-set refined once (not again on a second run), the refined files
    evaluated like the raw ones, both sets of metrics in the record."""
    import cesped.refinement.api as api
    from cesped.benchmark.__main__ import main
    from cesped.benchmark.evaluator import Evaluator
    from cesped.benchmark.records import read_record
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.io.star import read_star

    calls = []
    real = api.refine_star
    monkeypatch.setattr(api, "refine_star", lambda *a, **kw: calls.append(a[:2]) or real(*a, **kw))
    args = [
        "run",
        "method=MyNet",
        f"predictions={user_preds}/tinyA/seed0/half{{half}}.star",
        "entries=[tinyA]",
        "seeds=[0]",
        f"outdir={tmp_path}",
        f"benchmark_dir={tiny_bench}",
        "n_cpus=1",
        "random_reference=false",
        "refine=true",
    ]
    assert main(args) == 0
    assert sorted(calls) == [("tinyA", 0), ("tinyA", 1)]
    path = tmp_path / "records" / "MyNet" / "tinyA" / "seed0.json"
    r = read_record(path)
    ref = r["refined"]
    assert set(ref) == {"metrics", "angular", "predictions", "refinement"}
    for h in (0, 1):
        # stored relative to the outdir (no machine path of the run's directory in a record)
        assert ref["predictions"][f"half{h}"] == f"runs/MyNet/tinyA/seed0/refined/predictions_{h}.star"
        star = tmp_path / ref["predictions"][f"half{h}"]
        parts = read_star(star).particles
        ev = Evaluator("tinyA", h, benchmarkDir=tiny_bench)
        want = ev.eval(
            parts["rlnImageName"].astype(str).to_numpy(), euler_to_matrix(parts[ANGLES].to_numpy(np.float64))
        )
        assert ref["angular"][f"half{h}"]["MAnE"] == pytest.approx(want["MAnE"], rel=1e-12)
        assert ref["refinement"][f"half{h}"]["n"] == len(ev)
        # the reference map's description names the entries' directory by its token, not its path
        assert ref["refinement"][f"half{h}"]["reference"].startswith(
            f"native reconstruction of $CESPED_BENCHMARK_DIR/tinyA/particles_{1 - h}.star"
        )
    text = path.read_text()
    assert str(Path(tiny_bench).resolve()) not in text and str(tmp_path.resolve()) not in text
    assert "benchmark_dir=$CESPED_BENCHMARK_DIR" in r["command"] and "outdir=$OUTDIR" in r["command"]
    m = ref["metrics"]
    assert m["MAnE_deg"] == pytest.approx(
        0.5 * (ref["angular"]["half0"]["MAnE"] + ref["angular"]["half1"]["MAnE"]), rel=1e-12
    )
    assert m["MAnE_deg"] != r["metrics"]["MAnE_deg"]  # the refined poses are not the raw ones
    assert r["timings_s"]["refine"] > 0 and r["timings_s"]["evaluate_refined"] > 0
    # the leaderboard shows the refined poses as a row of their own
    from cesped.benchmark.leaderboard import build_leaderboard

    board = build_leaderboard([tmp_path / "records"], benchmark_dir=tiny_bench, compute_random=False)
    rows = {row.method: row for row in board.tables["tinyA"]}
    assert rows["MyNet"].stats["MAnE"][0] == r["metrics"]["MAnE"]
    assert rows["MyNet + refinement"].stats["MAnE"][0] == m["MAnE"]
    assert "| MyNet + refinement |" in board.markdown()
    # a second run (the record deleted, as after a kill before writing it) does not refine again
    path.unlink()
    calls.clear()
    assert main(args) == 0
    assert calls == [] and read_record(path)["refined"]["metrics"]["MAnE_deg"] == m["MAnE_deg"]


def test_portable_paths_strip_the_outdir_and_name_the_benchmark_dir(tmp_path):
    from cesped.benchmark.protocol import BENCHMARK_DIR_TOKEN, OUTDIR_TOKEN, portable_paths

    out, bench = tmp_path / "out", tmp_path / "bench"
    obj = {
        "a": f"{out}/runs/x.star",
        "o": [f"outdir={out}", f"{out}x/y"],
        "b": [f"map of {bench}/e/particles_1.star (C1)", f"{bench}", f"({bench})"],
        "c": (f"{bench}2/e.star", "/elsewhere/p.star", 3),
    }
    got = portable_paths(obj, out, bench)
    assert got["a"] == "runs/x.star"
    assert got["o"] == [f"outdir={OUTDIR_TOKEN}", f"{out}x/y"]
    assert got["b"] == [
        f"map of {BENCHMARK_DIR_TOKEN}/e/particles_1.star (C1)",
        BENCHMARK_DIR_TOKEN,
        f"({BENCHMARK_DIR_TOKEN})",
    ]
    assert got["c"] == (f"{bench}2/e.star", "/elsewhere/p.star", 3)  # another directory is not it
    assert portable_paths(obj, out)["b"][0] == obj["b"][0]
