"""``mtbert search``: hyper-parameter search with Optuna over any config field.

A search file names a base recipe, fixed overrides, the space and how to search it::

    recipe: ../recipes/quickstart.yaml     # relative to this file
    overrides: [data.shrink=20]
    objective: composite                   # any dev metric in metrics.jsonl (sst_acc, sts_pearson, ...)
    direction: maximize
    sampler: tpe                           # tpe | random | grid
    trials: 20
    pruner: median                         # none | median: stop trials whose dev score lags, per epoch
    space:
      train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}
      train.batch_size: {choices: [16, 32]}
      train.epochs: {low: 1, high: 3, type: int}

Each trial is a run in ``<output>/trial-NNNN``. The study lives in an Optuna database (SQLite in the
output directory unless ``--storage`` names another), so several workers, on one machine or many, can
run the same search at once: Optuna hands out trial numbers, so their run directories never collide.
At the end the worker prints and saves the table of every trial in the study (``trials.csv``,
``trials.md``) and writes the best trial's full config as a recipe (``best.yaml``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import shutil
import logging
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from ..config import ConfigError, build_dataclass, load_config, read_yaml_mapping

log = logging.getLogger("mtbert")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median")
DIRECTIONS = ("maximize", "minimize")
KEEP = ("best", "all")


@dataclasses.dataclass
class ParameterSpace:
    """One searched field: ``choices`` (any values; what grid search enumerates), or a range
    ``low``..``high`` of ``type`` float or int, optionally on a log scale or with a ``step``."""

    choices: Optional[list[Any]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    type: str = "float"
    log: bool = False
    step: Optional[float] = None


@dataclasses.dataclass
class SearchConfig:
    recipe: str = ""
    overrides: list[str] = dataclasses.field(default_factory=list)
    objective: str = "composite"
    direction: str = "maximize"
    sampler: str = "tpe"
    seed: int = 0
    trials: int = 10
    pruner: str = "none"
    pruner_warmup_epochs: int = 0     # epochs a trial runs before it can be pruned
    keep: str = "best"                # best: only the best trial keeps its best/ (the others keep their
                                      #   metrics, predictions and results) | all
    space: dict[str, ParameterSpace] = dataclasses.field(default_factory=dict)


def load_search(path: str | Path, trials: Optional[int] = None) -> tuple[SearchConfig, Path]:
    path = Path(path)
    try:
        search = build_dataclass(SearchConfig, read_yaml_mapping(path), "")
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    if trials is not None:
        search.trials = trials
    problems = []
    if not search.recipe:
        problems.append("recipe: the base recipe is required")
    if not search.space:
        problems.append("space: nothing to search")
    for field, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("direction", DIRECTIONS), ("keep", KEEP)):
        if getattr(search, field) not in allowed:
            problems.append(f"{field}: {getattr(search, field)!r} is not one of {', '.join(allowed)}")
    for name, space in search.space.items():
        if space.choices is None and (space.low is None or space.high is None):
            problems.append(f"space.{name}: give choices, or low and high")
        elif space.choices is None and space.type not in ("float", "int"):
            problems.append(f"space.{name}: type must be float or int, not {space.type!r}")
        elif space.choices is None and space.low >= space.high:
            problems.append(f"space.{name}: low must be below high")
        if search.sampler == "grid" and space.choices is None:
            problems.append(f"space.{name}: grid search needs choices")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    recipe = Path(search.recipe)
    if not recipe.is_absolute():
        recipe = path.parent / recipe
    load_config(recipe, search.overrides)  # fail now, not in trial 0, on a bad recipe or override
    for name, space in search.space.items():  # and on a field that does not exist or takes another type
        sample = space.choices[0] if space.choices is not None else space.low
        load_config(recipe, [*search.overrides, override(name, int(sample) if space.type == "int" else sample)])
    return search, recipe


def override(name: str, value: Any) -> str:
    return f"{name}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def suggest(trial, name: str, space: ParameterSpace) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.type == "int":
        return trial.suggest_int(name, int(space.low), int(space.high), step=int(space.step or 1), log=space.log)
    return trial.suggest_float(name, space.low, space.high, step=space.step, log=space.log)


def distribution(space: ParameterSpace):
    """The Optuna distribution ``suggest`` draws this field from."""
    from optuna import distributions

    if space.choices is not None:
        return distributions.CategoricalDistribution(space.choices)
    if space.type == "int":
        return distributions.IntDistribution(int(space.low), int(space.high), log=space.log, step=int(space.step or 1))
    return distributions.FloatDistribution(space.low, space.high, log=space.log, step=space.step)


def check_compatible(study, search: SearchConfig, search_file: Path, storage: str) -> None:
    """A study joined again (a resumed or extra worker) must search the same kind of space: Optuna
    refuses a field drawn from choices in one trial and from a range in another deep inside a trial.
    Say so before any trial, naming the field, what the study holds and what the file asks."""
    from optuna.distributions import check_distribution_compatibility

    created_by = study.user_attrs.get("sampler")
    for trial in study.trials:
        for name, space in search.space.items():
            if name not in trial.distributions:
                continue
            wanted = distribution(space)
            try:
                check_distribution_compatibility(trial.distributions[name], wanted)
            except ValueError as error:
                raise ConfigError(
                    f"{search_file}: study {study.study_name!r} in {storage}"
                    f"{f' (created by a {created_by} search)' if created_by else ''} already searched {name} as "
                    f"{type(trial.distributions[name]).__name__}, and this file asks for "
                    f"{type(wanted).__name__} ({error}); use the same space, or another --output-dir or "
                    f"--study-name") from None


def make_sampler(search: SearchConfig):
    import optuna

    if search.sampler == "grid":
        return optuna.samplers.GridSampler({n: s.choices for n, s in search.space.items()}, seed=search.seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed)


def make_pruner(search: SearchConfig):
    import optuna

    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=search.pruner_warmup_epochs)
    return optuna.pruners.NopPruner()


def open_study(search: SearchConfig, storage: str, name: str):
    """Create the study or join it; SQLite waits for the lock instead of failing when workers write at once."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    try:
        url = make_url(storage)
    except ArgumentError:
        raise ValueError(f"--storage {storage!r} is not a database URL (e.g. sqlite:///study.db or "
                         "postgresql://user@host/db)") from None
    kwargs = {"connect_args": {"timeout": 60}} if url.drivername.startswith("sqlite") else {}
    for attempt in range(8):  # two workers creating the tables at the same moment: the loser retries
        try:
            rdb = optuna.storages.RDBStorage(storage, engine_kwargs=kwargs)
            return optuna.create_study(study_name=name, storage=rdb, sampler=make_sampler(search),
                                       pruner=make_pruner(search), direction=search.direction, load_if_exists=True)
        except (NoSuchModuleError, ImportError) as error:
            raise ValueError(f"--storage {storage!r}: no database driver for {url.drivername!r} ({error})") from None
        except OperationalError as error:
            message = str(error).lower()
            racing = "locked" in message or "already exists" in message  # the other worker holds or made it
            if not racing or attempt == 7:  # not the other worker's doing: the database cannot be reached
                first = str(error.orig if getattr(error, "orig", None) else error).splitlines()[0]
                raise ValueError(f"--storage {storage!r} cannot be opened: {first}") from None
            time.sleep(0.5 * (attempt + 1))
        except SQLAlchemyError:  # the other worker stamped the schema version first
            if attempt == 7:
                raise
            time.sleep(0.5 * (attempt + 1))


def best_value(records: list[dict], objective: str, direction: str) -> float:
    values = [r[objective] for r in records if objective in r]
    if not values:
        raise ValueError(f"objective {objective!r} is not among the dev metrics "
                         f"({', '.join(k for k in (records[0] if records else {}) if k not in ('step', 'epoch', 'split'))})")
    return max(values) if direction == "maximize" else min(values)


def run_search(search_file: str | Path, output_dir: str | Path, trials: Optional[int] = None,
               storage: Optional[str] = None, study_name: Optional[str] = None,
               extra_overrides: tuple[str, ...] = ()) -> dict:
    """Run this worker's trials of the study; returns the table rows and the best trial."""
    import optuna

    from ..train import Trainer
    from ..train.run_log import read_metrics

    search, recipe = load_search(search_file, trials)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    name = study_name or Path(search_file).stem
    study = open_study(search, storage, name)
    check_compatible(study, search, Path(search_file), storage)
    if "sampler" not in study.user_attrs:
        study.set_user_attr("sampler", search.sampler)
    # trials are never resumed one by one: no checkpoint.pt (a file may still say otherwise)
    base = ["train.keep_checkpoint=none", *search.overrides, *extra_overrides, "train.progress=false"]

    def objective(trial) -> float:
        params = {n: suggest(trial, n, s) for n, s in search.space.items()}
        config = load_config(recipe, base + [override(n, v) for n, v in params.items()])
        run_dir = output / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))

        def prune(trainer, record) -> None:
            if search.objective in record:
                trial.report(record[search.objective], record["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{search.objective} {record[search.objective]:.4f} at epoch "
                                             f"{record['epoch']}")

        started = time.perf_counter()
        results = Trainer(config, run_dir, eval_callbacks=[prune]).train()
        trial.set_user_attr("train_seconds", results["train_seconds"])
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - started, 1))
        return best_value(read_metrics(run_dir, "dev"), search.objective, search.direction)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    callbacks = [keep_best_model_only] if search.keep == "best" else []
    study.optimize(objective, n_trials=search.trials, catch=(), callbacks=callbacks)
    with table_lock(output):  # workers finishing together: the last to write read the study last
        rows = trial_rows(study, search)
        write_table(output, rows)
    summary = {"study": name, "storage": storage, "trials": rows}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        params = {n: readable(v) for n, v in best.params.items()}
        write_best_recipe(output / "best.yaml", recipe, [*search.overrides, *extra_overrides], params, name,
                          best.number, search.objective, best.value)
        summary["best"] = {"number": best.number, "value": best.value, "params": params,
                           "recipe": str(output / "best.yaml")}
    return summary


# What a search sets to make its trials short, which the recipe it hands on must not keep.
SHORTENING = ("data.limit", "data.eval_limit", "data.shrink", "train.max_steps")


def readable(value: Any) -> Any:
    """A sampled float to 4 significant digits (8.841e-05, not 8.840661465267693e-05); others as they are."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def write_best_recipe(path: Path, recipe: Path, overrides: list[str], params: dict, study: str, number: int,
                      objective: str, value: float) -> None:
    """The best trial as a recipe to train in full: the base recipe, the search's overrides except those that
    shortened its trials, the best parameters, and a name of its own (not the base recipe's run directory)."""
    kept = [o for o in overrides if o.split("=", 1)[0].strip() not in SHORTENING]
    dropped = [o for o in overrides if o not in kept]
    config = load_config(recipe, kept + [override(n, v) for n, v in params.items()])
    config = dataclasses.replace(config, output_dir="", name=f"{config.name}-{study}-best")
    config.train.progress = True
    header = [f"# The best trial ({number}) of search {study!r}: {objective} {value:.4f}, with "
              + ", ".join(f"{n}={v}" for n, v in params.items()) + "."]
    if dropped:
        header.append(f"# Left out: the search's shortening of its trials ({', '.join(dropped)}); this recipe trains "
                      "in full.")
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def keep_best_model_only(study, finished) -> None:
    """After each trial: remove best/ from every finished trial but the study's best so far (what a
    3-step, 2-trial search left was 694 MB, nearly all models nobody would load)."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    keep = study.best_trial.number if complete else None
    for trial in study.trials:
        if trial.state.is_finished() and trial.number != keep and trial.user_attrs.get("run_dir"):
            shutil.rmtree(Path(trial.user_attrs["run_dir"]) / "best", ignore_errors=True)


@contextlib.contextmanager
def table_lock(output: Path):
    """An exclusive lock on the output directory's table while the study is read and the table written."""
    with open(output / ".trials.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trial_rows(study, search: SearchConfig) -> list[dict]:
    rows = []
    for trial in sorted(study.trials, key=lambda t: t.number):
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     search.objective: None if trial.value is None else round(trial.value, 4),
                     **{name: trial.params.get(name) for name in search.space},
                     "train_seconds": trial.user_attrs.get("train_seconds"),
                     "run_dir": trial.user_attrs.get("run_dir", "")})
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no trials)"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if row[k] is None else str(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines)


def write_table(output: Path, rows: list[dict]) -> None:
    (output / "trials.md").write_text(format_table(rows) + "\n", encoding="utf-8")
    if rows:
        with open(output / "trials.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
