"""The benchmark protocol: seeded runs over entries, evaluated and recorded, resumable.

For each entry and seed, a method is trained on each half-set and predicts the other
(:func:`cesped.training.train.train` with the composed ``configs/train.yaml`` of an experiment,
then :func:`cesped.training.infer.infer` with its best checkpoint), both prediction files are
evaluated (:func:`cesped.evaluation.evaluate.evaluate` and :class:`cesped.Evaluator`), and one
results record (:mod:`cesped.benchmark.records`) is written per (entry, seed). With
``predictions`` a user's prediction files are evaluated instead of training (any method can be
entered). Each entry also gets a random-poses reference record (seed 0) and each simulated entry
the image-limited floor's record (:mod:`cesped.benchmark.floor_record`, seed 0).

Layout of ``outdir``::

    records/<method>/<entry>/seed<k>.json           the results records (the leaderboard's input)
    records/random-poses/<entry>/seed0.json         the random-poses reference of the entry
    records/image-limited-floor/<entry>/seed0.json  the floor of a simulated entry
    runs/<method>/<entry>/seed<k>/half<h>/          cesped.train output of half-set h:
        checkpoints/, csv/, predictions_<1-h>.star,
        protocol_trained.json                       written when training has finished
        protocol_half.json                          written when the prediction has finished
    runs/<method>/<entry>/seed<k>/refined/          refine=true: predictions_<h>.star refined,
        protocol_refined_<h>.json                   written when half-set h is refined
    runs/random-poses/<entry>/predictions_<h>.star
    runs/image-limited-floor/<entry>/predictions_<h>.star

Resuming: a run that is started again skips every (entry, seed) whose record exists, every
half-set whose ``protocol_half.json`` (or, for halves trained elsewhere, ``predictions_<1-h>.star``)
exists, retrains no half with ``protocol_trained.json``, and continues an interrupted training
from its ``checkpoints/last.ckpt`` (``resume=true``). A killed run loses at most the work since the
last epoch of the half-set in progress. A half-set directory trained with another configuration,
or a record of another version of the entry (entry checksum), is refused.

SLURM: train the halves as one job each with the existing Hydra launcher, writing into the
layout above, then run the protocol once more (it finds the predictions and only evaluates)::

    python -m cesped.train -m hydra/launcher=slurm experiment=demo \\
        entry=synth_6msm,synth_4e43 seed=0,1,2 halfset=0,1 \\
        'output_dir=OUT/runs/Image2Sphere-demo/${entry}/seed${seed}/half${halfset}'
    python -m cesped.benchmark run experiment=demo entries=[synth_6msm,synth_4e43] seeds=[0,1,2] outdir=OUT

(their training/prediction times are then unknown, ``null`` in the records).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cesped import settings
from cesped.benchmark import records as rec

__all__ = ["ProtocolConfig", "run_protocol", "random_poses_record", "RANDOM_METHOD"]

RANDOM_METHOD = "random poses"
_ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
_FOM = "rlnParticleFigureOfMerit"
_ORIGINS = ["rlnOriginXAngst", "rlnOriginYAngst"]


def _log(msg: str) -> None:
    print(f"[cesped benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class ProtocolConfig:
    """What :func:`run_protocol` runs.

    Attributes
    ----------
    entries : list of str
        Entry names (as ``cesped.particlesDataset list_entries``, or local entries).
    seeds : list of int
        Training seeds (``seed=`` of ``configs/train.yaml``); the protocol's minimum is 3.
    experiment : str or None
        ``experiment=`` of the training config (e.g. ``demo``, ``paper``); None with ``predictions``.
    outdir : path
        Root of records and runs (module docstring).
    method : str, optional
        Method name in the records and the table (default ``Image2Sphere[<experiment>]``;
        required with ``predictions``).
    predictions : str, optional
        Template of the user's prediction files, with ``{half}`` and, when several entries or
        seeds are run, ``{entry}`` and ``{seed}``, e.g. ``preds/{entry}/seed{seed}/half{half}.star``
        (a RELION star file per half-set, as for ``evaluateEntry``).
    method_config : dict
        Stored in the records with ``predictions`` (e.g. the user's hyper-parameters).
    train_overrides : list of str
        Extra Hydra overrides of the training config (e.g. ``trainer.max_epochs=5``).
    benchmark_dir : path, optional
        Root of the entries.
    n_cpus, device : evaluation threads and reconstruction device.
    save_maps : bool
        Keep the evaluation's maps and metrics files in ``runs/.../seed<k>/evaluation``.
    refine : bool
        Also refine both prediction files (:func:`cesped.refinement.api.refine_star`, local search
        against the map of the other half-set's ground-truth poses, ``device``) into
        ``runs/.../seed<k>/refined/predictions_<h>.star`` and evaluate them: the record then
        holds the raw and the refined metrics (``refined``).
    random_reference : bool
        Write each entry's random-poses reference record.
    floor_reference : bool
        Write each simulated entry's image-limited floor record
        (:func:`cesped.benchmark.floor_record.floor_poses_record`; entries without a true map get
        none).
    """

    entries: list[str]
    seeds: list[int]
    experiment: str | None = "demo"
    outdir: Path = Path("benchmark_results")
    method: str | None = None
    predictions: str | None = None
    method_config: dict = field(default_factory=dict)
    train_overrides: list[str] = field(default_factory=list)
    benchmark_dir: str | None = None
    n_cpus: int = 2
    device: str = "cpu"
    save_maps: bool = False
    refine: bool = False
    random_reference: bool = True
    floor_reference: bool = True
    command: list[str] | None = None

    def __post_init__(self):
        if not self.entries:
            raise ValueError("entries: give at least one entry, e.g. entries=[synth_6msm]")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed, e.g. seeds=[0,1,2]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicated seeds in {self.seeds}")
        if len(set(self.entries)) != len(self.entries):
            raise ValueError(f"entries: duplicated entries in {self.entries}")
        self.seeds = [int(s) for s in self.seeds]
        self.outdir = Path(self.outdir)
        if self.predictions is not None:
            if not self.method:
                raise ValueError("method: name your method (method=<name>) when evaluating predictions=")
            if "{half}" not in self.predictions:
                raise ValueError(f"predictions: the template must contain {{half}}, got {self.predictions!r}")
            if len(self.entries) > 1 and "{entry}" not in self.predictions:
                raise ValueError("predictions: several entries need {entry} in the template")
            if len(self.seeds) > 1 and "{seed}" not in self.predictions:
                raise ValueError("predictions: several seeds need {seed} in the template")
        elif not self.experiment:
            raise ValueError("experiment: give experiment=<name> (configs/experiment) or predictions=...")
        if self.method is None:
            self.method = f"Image2Sphere[{self.experiment}]"
        if rec.slug(self.method) == rec.slug(RANDOM_METHOD):
            raise ValueError(f"method: {self.method!r} is reserved for the random-poses reference")
        from cesped.benchmark.floor_record import FLOOR_METHOD

        if rec.slug(self.method) == rec.slug(FLOOR_METHOD):
            raise ValueError(f"method: {self.method!r} is reserved for the image-limited floor reference")

    @property
    def records_dir(self) -> Path:
        return self.outdir / "records"

    def run_dir(self, entry: str, seed: int) -> Path:
        return self.outdir / "runs" / rec.slug(self.method) / rec.slug(entry) / f"seed{seed}"


# ------------------------------------------------------------------------------- training


def compose_train_config(cfg: ProtocolConfig, entry: str, seed: int, halfset: int):
    """The training config of one (entry, seed, half-set), as ``python -m cesped.train`` composes it."""
    from hydra import compose, initialize_config_module

    out = cfg.run_dir(entry, seed) / f"half{halfset}"
    ovr = [
        f"experiment={cfg.experiment}",
        f"entry={entry}",
        f"halfset={halfset}",
        f"seed={seed}",
        f"output_dir={out.resolve().as_posix()}",
        "resume=true",
        "predict_other_half=false",
    ]
    if cfg.benchmark_dir is not None:
        ovr.append(f"benchmark_dir={Path(cfg.benchmark_dir).resolve().as_posix()}")
    ovr.extend(cfg.train_overrides)
    with initialize_config_module(config_module="cesped.configs", version_base="1.3"):
        return compose(config_name="train", overrides=ovr)


def _config_dict(train_cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(
        OmegaConf.masked_copy(train_cfg, [k for k in train_cfg if k != "hydra"]), resolve=True
    )


#: Training-config keys that do not change a trained half-set or its predictions: what differs
#: between attempts (resume, output paths) and the refinement after prediction (the protocol
#: refines with ``refine=true`` itself, and a new refinement option must not invalidate a run).
_NOT_COMPARED = ("resume", "output_dir", "output_root", "refine", "refinement")


def _comparable(conf: dict) -> str:
    """The config without the keys of :data:`_NOT_COMPARED`, as a canonical JSON string."""
    c = {k: v for k, v in conf.items() if k not in _NOT_COMPARED}
    return json.dumps(c, sort_keys=True, default=str)


def _same_config(saved, conf: dict) -> bool:
    """Whether a state file's ``config`` (a :func:`_comparable` string, possibly written by an
    earlier version that compared more keys) matches ``conf``."""
    try:
        old = json.loads(saved) if isinstance(saved, str) else None
    except ValueError:
        return False
    return isinstance(old, dict) and _comparable(old) == _comparable(conf)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: corrupt protocol state file ({e}); delete it to redo that step") from e


def _write_json(path: Path, obj: dict) -> None:
    from cesped.io.atomic import atomic_open

    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=1, default=str)


def run_half(cfg: ProtocolConfig, entry: str, seed: int, halfset: int) -> dict:
    """Train on ``halfset`` and predict the other half-set, unless already done; return its state.

    Returns
    -------
    dict
        ``predictions`` (path of ``predictions_<1-h>.star``), ``train_s``, ``predict_s`` (None when
        the half was trained outside the protocol), ``resumed`` (training continued a checkpoint).
    """
    from cesped.training.infer import infer
    from cesped.training.train import train

    other = 1 - halfset
    tcfg = compose_train_config(cfg, entry, seed, halfset)
    conf = _config_dict(tcfg)
    out = Path(tcfg.output_dir)
    pred = out / f"predictions_{other}.star"
    done, trained = out / "protocol_half.json", out / "protocol_trained.json"
    where = f"{entry} seed {seed} half-set {halfset}"
    for state_file in (done, trained):
        if state_file.is_file() and not _same_config(_read_json(state_file).get("config"), conf):
            raise ValueError(
                f"{where}: {state_file} was made with another training configuration; use another "
                f"outdir or method name, or delete {out} to retrain"
            )
    if done.is_file() and pred.is_file():
        state = _read_json(done)
        _log(f"{where}: done earlier ({pred})")
        return {k: state.get(k) for k in ("predictions", "train_s", "predict_s", "resumed")}
    if pred.is_file() and not trained.is_file():
        _log(f"{where}: using predictions made outside the protocol ({pred}); their times are unknown")
        return {"predictions": str(pred), "train_s": None, "predict_s": None, "resumed": None}
    if trained.is_file():
        st = _read_json(trained)
        ckpt, train_s, resumed = st["ckpt"], st["train_s"], st["resumed"]
        _log(f"{where}: training finished earlier; predicting half-set {other}")
    else:
        resumed = (out / "checkpoints" / "last.ckpt").is_file()
        _log(f"{where}: training{' (resuming from last.ckpt)' if resumed else ''}")
        t0 = time.perf_counter()
        result = train(tcfg)
        train_s = time.perf_counter() - t0
        ckpt = result.get("best_ckpt") or result.get("last_ckpt")
        if not ckpt:
            raise RuntimeError(f"{where}: training finished without a checkpoint in {out / 'checkpoints'}")
        _write_json(
            trained, {"ckpt": str(ckpt), "train_s": train_s, "resumed": resumed, "config": _comparable(conf)}
        )
    p = tcfg.get("prediction") or {}
    device = p.get("device") or ("cuda" if str(tcfg.trainer.get("accelerator")) in ("gpu", "cuda") else "cpu")
    t0 = time.perf_counter()
    infer(
        {
            "ckpt": str(ckpt),
            "entry": entry,
            "halfset": other,
            "benchmark_dir": tcfg.get("benchmark_dir"),
            "out": str(pred),
            "batch_size": int(p.get("batch_size", 64)),
            "num_workers": int(tcfg.data.get("num_workers", 0)),
            "top_k": int(p.get("top_k", 1)),
            "order": p.get("order"),
            "refine_steps": int(p.get("refine_steps", 0)),
            "rot90_average": bool(p.get("rot90_average", False)),
            "device": device,
            "progress": False,
        }
    )
    predict_s = time.perf_counter() - t0
    state = {
        "predictions": str(pred),
        "train_s": train_s,
        "predict_s": predict_s,
        "resumed": resumed,
        "ckpt": str(ckpt),
        "config": _comparable(conf),
    }
    _write_json(done, state)
    return {k: state[k] for k in ("predictions", "train_s", "predict_s", "resumed")}


# ----------------------------------------------------------------------------- evaluation


def _angular_of_file(entry: str, halfset: int, pred_path, benchmark_dir) -> dict:
    """:class:`cesped.Evaluator` metrics of a prediction star file (whole half-set required)."""
    from cesped.benchmark.evaluator import Evaluator
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.io.star import read_star

    parts = read_star(pred_path).particles
    conf = parts[_FOM].to_numpy(dtype=np.float64) if _FOM in parts.columns else None
    return Evaluator(entry, halfset, benchmark_dir).eval(
        parts["rlnImageName"].astype(str).to_numpy(),
        euler_to_matrix(parts[_ANGLES].to_numpy(dtype=np.float64)),
        confidence=conf,
        complete=True,
    )


def evaluate_pair(
    entry: str, preds: dict[int, str], benchmark_dir=None, n_cpus: int = 2, device: str = "cpu", eval_dir=None
):
    """(metrics of evaluateEntry, angular metrics per half, evaluation seconds) of two prediction files.

    ``preds`` maps half-set -> prediction star file; ``eval_dir`` (optional) keeps evaluate's outputs.
    """
    from cesped.evaluation.evaluate import evaluate

    t0 = time.perf_counter()
    metrics = evaluate(
        targetName=entry,
        half0PredsFname=str(preds[0]),
        half1PredsFname=str(preds[1]),
        predictionType="SO3",
        usePredConfidence=True,
        n_cpus=int(n_cpus),
        outdir=None if eval_dir is None else str(eval_dir),
        benchmarkDir=benchmark_dir,
        device=device,
        plots=False,
    )
    angular = {f"half{h}": _angular_of_file(entry, h, preds[h], benchmark_dir) for h in (0, 1)}
    return metrics, angular, time.perf_counter() - t0


def _existing(path: Path, checksum: str) -> bool:
    """Whether a valid record of this entry version exists at ``path`` (refuses another version)."""
    if not path.is_file():
        return False
    r = rec.read_record(path)
    if r["entry_checksum"] != checksum:
        raise ValueError(
            f"{path}: record of another version of entry {r['entry']} (checksum {r['entry_checksum']}, the "
            f"entry on disk has {checksum}); move it away or use another outdir"
        )
    return True


def random_poses_record(
    entry: str,
    benchmark_dir=None,
    workdir: Path | None = None,
    seed: int = 0,
    n_cpus: int = 2,
    device: str = "cpu",
    checksum: str | None = None,
    command: list[str] | None = None,
) -> dict:
    """The random-poses reference of an entry: Haar-uniform rotations evaluated like a method.

    Prediction files (ground truth with ``Rotation.random(rng=default_rng(seed + h))``
    poses as ``[rot, tilt, psi] = as_euler("ZYZ")``, confidence 1) go to ``workdir`` (default a
    temporary directory).
    """
    from scipy.spatial.transform import Rotation

    from cesped.data.local import ensure_entry

    entry_dir = ensure_entry(entry, 0, benchmark_dir)
    ensure_entry(entry, 1, benchmark_dir)
    checksum = checksum or rec.entry_checksum(entry_dir)
    poses = {}
    for h in (0, 1):
        n = _n_particles(entry, h, benchmark_dir)
        poses[h] = (
            Rotation.random(n, rng=np.random.default_rng(seed + h)).as_euler("ZYZ", degrees=True),
            None,
        )
    metrics, angular, eval_s, preds = evaluate_poses(entry, poses, benchmark_dir, workdir, n_cpus, device)
    return rec.new_record(
        entry,
        seed,
        RANDOM_METHOD,
        "reference",
        {
            "poses": "Haar-uniform, scipy Rotation.random(rng=numpy.random.default_rng(seed + halfset))",
            "confidence": 1.0,
        },
        checksum,
        metrics,
        angular,
        {"train": None, "predict": None, "evaluate": eval_s},
        preds,
        command,
    )


def _n_particles(entry: str, halfset: int, benchmark_dir=None) -> int:
    from cesped.data.local import entry_paths
    from cesped.io.star import read_star

    return len(read_star(entry_paths(entry, halfset, benchmark_dir)["star"]).particles)


def evaluate_poses(
    entry: str, poses: dict, benchmark_dir=None, workdir=None, n_cpus: int = 2, device: str = "cpu"
) -> tuple[dict, dict, float, dict]:
    """Evaluate poses given as arrays like a method's prediction files (confidence 1).

    Parameters
    ----------
    poses : dict
        Half-set -> ``(angles, origins)``: RELION Euler angles ``[rot, tilt, psi]`` (n, 3), degrees,
        in the order of the half-set's star; origins (n, 2) in Å (``rlnOriginX/YAngst``) or None to
        keep the star's.
    workdir : path, optional
        Where the prediction files ``predictions_{0,1}.star`` are kept (default: a temporary
        directory, removed).

    Returns
    -------
    (metrics, angular, evaluation seconds, {"half0": path or None, "half1": ...})
    """
    import tempfile

    from cesped.data.local import entry_paths
    from cesped.io.star import read_star, write_star

    with tempfile.TemporaryDirectory(prefix="cesped_poses_") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        preds = {}
        for h in (0, 1):
            st = read_star(entry_paths(entry, h, benchmark_dir)["star"]).copy()
            angles, origins = poses[h]
            if len(angles) != len(st.particles) or (
                origins is not None and len(origins) != len(st.particles)
            ):
                raise ValueError(
                    f"{entry} half-set {h}: {len(angles)} poses for {len(st.particles)} particles"
                )
            st.particles[_ANGLES] = np.asarray(angles, dtype=np.float64)
            if origins is not None:
                st.particles[_ORIGINS] = np.asarray(origins, dtype=np.float64)
            st.particles[_FOM] = 1.0
            preds[h] = wd / f"predictions_{h}.star"
            write_star(preds[h], st)
        metrics, angular, eval_s = evaluate_pair(entry, preds, benchmark_dir, n_cpus, device)
    return metrics, angular, eval_s, {f"half{h}": None if workdir is None else str(preds[h]) for h in (0, 1)}


# ------------------------------------------------------------------------------- refinement


def refine_pair(cfg: ProtocolConfig, entry: str, seed: int, preds: dict[int, str]) -> tuple[dict, dict]:
    """Refine both prediction files unless done earlier; return (refined paths, summaries).

    Each half-set's poses are refined against the map of the other half-set's ground truth
    (:func:`cesped.refinement.api.refine_star` defaults: FSC-weighted, two rounds, 4 global
    starts; its own labels are never read). Every method is refined the same way, from the one
    pose per particle of its prediction file (a user's file has no top-K candidates), so
    ``make demo``'s refinement from the network's top-5 can differ slightly.
    ``refined/protocol_refined_<h>.json`` marks a finished half-set (with the input file it
    refined: other predictions are refined again).
    """
    from cesped.refinement.api import refine_star

    rdir = cfg.run_dir(entry, seed) / "refined"
    out, summaries = {}, {}
    for h in (0, 1):
        dst, done = rdir / f"predictions_{h}.star", rdir / f"protocol_refined_{h}.json"
        if done.is_file() and dst.is_file():
            state = _read_json(done)
            if state.get("input") == str(preds[h]):
                _log(f"{entry} seed {seed} half-set {h}: refined earlier ({dst})")
                out[h], summaries[h] = str(dst), state["summary"]
                continue
        _log(f"{entry} seed {seed} half-set {h}: refining")
        dst.parent.mkdir(parents=True, exist_ok=True)
        summary = refine_star(entry, h, preds[h], dst, device=cfg.device, benchmark_dir=cfg.benchmark_dir)
        _write_json(done, {"input": str(preds[h]), "summary": summary})
        out[h], summaries[h] = str(dst), summary
    return out, summaries


# --------------------------------------------------------------------------------- protocol


def _user_predictions(cfg: ProtocolConfig, entry: str, seed: int) -> dict[int, str]:
    preds = {}
    for h in (0, 1):
        p = Path(os.path.expanduser(cfg.predictions.format(entry=entry, seed=seed, half=h)))
        if not p.is_file():
            raise FileNotFoundError(f"predictions: {p} (entry {entry}, seed {seed}, half-set {h}) not found")
        preds[h] = str(p.resolve())
    return preds


#: What a record writes for the benchmark directory where a path under it appears inside a string
#: (the refinement's description of its reference map, a training config's ``benchmark_dir``, the
#: command's ``benchmark_dir=``).
BENCHMARK_DIR_TOKEN = "$CESPED_BENCHMARK_DIR"
#: The same for the protocol's ``outdir`` inside a string (the command's ``outdir=``).
OUTDIR_TOKEN = "$OUTDIR"


def portable_paths(obj, root: Path, benchmark_dir=None):
    """``obj`` (nested dicts, lists, strings) with no machine path of the run's directories.

    Records keep the files of a run (checkpoints, predictions) as paths relative to the protocol's
    ``outdir``, so that no machine path of the run's directory travels with a shared record: a
    string that starts with ``root/`` loses that prefix, and ``root`` elsewhere in a string is
    written :data:`OUTDIR_TOKEN`. Paths outside it (a user's own prediction files) are kept as
    given, except that the benchmark directory ``benchmark_dir`` (the entries), wherever it occurs
    in a string, is written :data:`BENCHMARK_DIR_TOKEN`.
    """
    top = Path(root).resolve().as_posix().rstrip("/")
    prefix = top + "/"
    bench = None if benchmark_dir is None else Path(benchmark_dir).resolve().as_posix().rstrip("/")
    if isinstance(obj, str):
        out = obj[len(prefix) :] if obj.startswith(prefix) else obj
        for path, token in ((bench, BENCHMARK_DIR_TOKEN), (top, OUTDIR_TOKEN)):
            if path:
                out = re.sub(re.escape(path) + r"(?=/|$|\s|\))", lambda _, t=token: t, out)
        return out
    if isinstance(obj, dict):
        return {k: portable_paths(v, root, benchmark_dir) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(portable_paths(v, root, benchmark_dir) for v in obj)
    return obj


def run_protocol(cfg: ProtocolConfig) -> list[Path]:
    """Run (or continue) the protocol; return the paths of the records of ``cfg``'s (entry, seed)s.

    Raises
    ------
    ValueError
        Unknown entry; an existing record or half-set run made for another entry version or
        training configuration; invalid predictions (from :func:`cesped.evaluation.evaluate.evaluate`).
    FileNotFoundError
        A user's prediction file is missing.
    """
    from cesped.data.local import ensure_entry

    out = []
    bench = settings.benchmark_dir(cfg.benchmark_dir)
    command = _record_command(cfg, bench)
    for entry in cfg.entries:
        entry_dir = ensure_entry(entry, 0, cfg.benchmark_dir)
        ensure_entry(entry, 1, cfg.benchmark_dir)
        checksum = rec.entry_checksum(entry_dir)
        for seed in cfg.seeds:
            path = rec.record_path(cfg.records_dir, cfg.method, entry, seed)
            out.append(path)
            if _existing(path, checksum):
                _log(f"{entry} seed {seed}: record exists ({path}), skipped")
                continue
            if cfg.predictions is not None:
                preds = _user_predictions(cfg, entry, seed)
                halves = {h: {"train_s": None, "predict_s": None} for h in (0, 1)}
                kind, mconf = "predictions", dict(cfg.method_config)
            else:
                halves = {}
                preds = {}
                for h in (0, 1):
                    halves[h] = run_half(cfg, entry, seed, h)
                    preds[1 - h] = halves[h]["predictions"]
                kind = "trained"
                mconf = {
                    "experiment": cfg.experiment,
                    "train_overrides": list(cfg.train_overrides),
                    "train_config_half0": _config_dict(compose_train_config(cfg, entry, seed, 0)),
                }
            _log(f"{entry} seed {seed}: evaluating")
            eval_dir = cfg.run_dir(entry, seed) / "evaluation" if cfg.save_maps else None
            metrics, angular, eval_s = evaluate_pair(
                entry, preds, cfg.benchmark_dir, cfg.n_cpus, cfg.device, eval_dir
            )
            timings = {"evaluate": eval_s}
            refined = None
            if cfg.refine:
                t0 = time.perf_counter()
                rpreds, summaries = refine_pair(cfg, entry, seed, preds)
                timings["refine"] = float(sum(v.get("seconds") or 0.0 for v in summaries.values()))
                r_metrics, r_angular, timings["evaluate_refined"] = evaluate_pair(
                    entry, rpreds, cfg.benchmark_dir, cfg.n_cpus, cfg.device
                )
                refined = {
                    "metrics": r_metrics,
                    "angular": r_angular,
                    "predictions": {f"half{h}": rpreds[h] for h in (0, 1)},
                    "refinement": {f"half{h}": summaries[h] for h in (0, 1)},
                }
                _log(f"{entry} seed {seed}: refined in {time.perf_counter() - t0:.0f} s")
            for what in ("train", "predict"):
                vals = [halves[h][f"{what}_s"] for h in (0, 1)]
                for h in (0, 1):
                    timings[f"{what}_half{h}"] = vals[h]
                timings[what] = None if any(v is None for v in vals) else float(sum(vals))
            if kind == "trained":
                timings["resumed"] = [halves[h].get("resumed") for h in (0, 1)]
            record = rec.new_record(
                entry,
                seed,
                cfg.method,
                kind,
                portable_paths(mconf, cfg.outdir, bench),
                checksum,
                metrics,
                angular,
                timings,
                portable_paths({f"half{h}": str(preds[h]) for h in (0, 1)}, cfg.outdir),
                command,
                refined=portable_paths(refined, cfg.outdir, bench),
            )
            rec.write_record(path, record)
            _log(f"{entry} seed {seed}: MAnE {metrics.get('MAnE_deg'):.2f} deg, record {path}")
        if cfg.random_reference:
            rpath = rec.record_path(cfg.records_dir, RANDOM_METHOD, entry, 0)
            if not _existing(rpath, checksum):
                _log(f"{entry}: random-poses reference")
                wd = cfg.outdir / "runs" / rec.slug(RANDOM_METHOD) / rec.slug(entry)
                r = random_poses_record(
                    entry, cfg.benchmark_dir, wd, 0, cfg.n_cpus, cfg.device, checksum, command
                )
                bench = settings.benchmark_dir(cfg.benchmark_dir)
                rec.write_record(rpath, portable_paths(r, cfg.outdir, bench))
        if cfg.floor_reference:
            _floor_record(cfg, entry, entry_dir, checksum)
    return out


def _record_command(cfg: ProtocolConfig, bench: Path) -> list[str]:
    """The command a record stores: ``cfg.command`` (default: this process's ``sys.argv``) with no
    machine path of the run's directories (:func:`portable_paths`; ``bench``: the resolved
    benchmark directory)."""
    cmd = sys.argv if cfg.command is None else cfg.command
    return portable_paths(list(cmd), cfg.outdir, bench)


def _floor_record(cfg: ProtocolConfig, entry: str, entry_dir: Path, checksum: str) -> None:
    from cesped.benchmark.floor_record import FLOOR_METHOD, floor_poses_record, has_true_map

    if not has_true_map(entry_dir):
        _log(f"{entry}: no true map (gt_map.mrc), no image-limited floor record")
        return
    fpath = rec.record_path(cfg.records_dir, FLOOR_METHOD, entry, 0)
    if _existing(fpath, checksum):
        return
    _log(f"{entry}: image-limited floor reference")
    wd = cfg.outdir / "runs" / rec.slug(FLOOR_METHOD) / rec.slug(entry)
    r = floor_poses_record(
        entry,
        cfg.benchmark_dir,
        wd,
        cfg.n_cpus,
        cfg.device,
        checksum,
        _record_command(cfg, settings.benchmark_dir(cfg.benchmark_dir)),
    )
    rec.write_record(fpath, portable_paths(r, cfg.outdir, settings.benchmark_dir(cfg.benchmark_dir)))
    _log(f"{entry}: image-limited floor MAnE {r['metrics'].get('MAnE_deg'):.2f} deg, record {fpath}")
