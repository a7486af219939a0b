"""The resolved factory: a config and a host decide the backend, the plan key and every job; and, for one job's
wildcards, each stage's inputs and settings. The Snakefile's rules, `check`, `status` and the failure records all
ask here, so they cannot disagree about what is built or what a job runs on.

    f = resolve(cfg, host)          # probe -> targets -> backend -> key -> plan jobs / skipped
    f.inputs("build", wildcards)    # {label: path}
    f.settings("build", wildcards)  # the stage's tracked settings (a change re-runs exactly that job)
    f.failed                        # plan jobs whose chain holds a recorded failure that still applies
    with open_workflow(directory, configfiles) as f:   # the commands: config loaded once, resolved inside it

Settings also carry what Snakemake cannot see by itself: the content digest of every source file the job reads
(`source_sha256`; a checkpoint replaced by other bytes with an older mtime still re-runs it) and, for the stages that
run the model's class, the digest of its code (`model_code`).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths, signing
from .config import load, model_settings
from .errors import FactoryError

MODEL_RULES = ("freeze", "freeze_tf", "export", "simplify", "golden")  # one job per model


def _wc(wildcards) -> dict:
    return dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards)


@dataclass(frozen=True)
class TargetSet:
    """The targets one build (and one validation) job covers for one (model, precision): every compute capability
    of the precision where the backend builds ahead of time on the CPU (one process, one parse of the ONNX), one
    where it builds on a GPU of that cc (each job runs on such a GPU, locally pinned or in its Slurm pool)."""

    ccs: tuple[str, ...]  # tags: ("80", "86", "89", "120")
    precisions: tuple[str, ...]  # the precisions built at exactly these targets
    per_cc: bool = False  # one cc: its jobs run on a GPU of that cc

    @property
    def tag(self) -> str:
        return paths.targets_tag(list(self.ccs))

    def rule(self, stage: str) -> str:
        return paths.set_rule(stage, self.tag)


@dataclass
class Factory:
    cfg: dict
    host: dict
    gpus: list
    backend: Any  # engine_factory.backends.Backend, as the keys see it
    key: str  # the backend part of every plan key
    jobs: list[dict]  # {model, key, cc, precision} of every plan to build
    skipped: list[dict]  # the same, with the reason it is not built
    workdir: str = "."
    _code_cache: dict = field(default_factory=dict, repr=False)
    _sets: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------------------------------- a model
    def model(self, name: str) -> dict:
        return self.cfg["models"][name]

    def framework(self, name: str):
        """The model's framework module (scripts/engine_factory/frameworks): every framework decision is asked there."""
        from .frameworks import framework_of

        return framework_of(self.model(name))

    def frozen_format(self, name: str) -> str | None:
        return self.framework(name).frozen_format(self.model(name))

    def freeze_rule(self, name: str) -> str | None:
        return self.framework(name).FREEZE_RULE

    def mem_mb(self, rule: str, name: str, default: int) -> int:
        """mem_mb of a model's framework jobs: the model's `mem_mb`, else its framework's measured need."""
        stage = "freeze" if rule == self.freeze_rule(name) else rule
        return self.model(name).get("mem_mb") or self.framework(name).MEM_MB.get(stage, default)

    @functools.cached_property
    def python_search_path(self) -> list[str]:
        from .modelcode import search_path

        return search_path(self.cfg["python_path"])

    def model_code(self, name: str) -> dict | None:
        """Fingerprint of the configured class's source (engine_factory/modelcode.py), once per model and process."""
        ref = self.model(name).get("model")
        if not ref:
            return None
        if name not in self._code_cache:
            from .modelcode import code_fingerprint

            self._code_cache[name] = code_fingerprint(ref, self.python_search_path, model=name)
        return self._code_cache[name]

    # ------------------------------------------------------------------------------------------- stages
    def inputs(self, rule: str, wildcards) -> dict[str, str]:
        w = _wc(wildcards)
        return {label: p for label, p in _INPUTS[rule](self, w).items() if p}

    def settings(self, rule: str, wildcards) -> dict:
        w = _wc(wildcards)
        s = _SETTINGS[rule](self, w)
        sources = self.source_digests(rule, w)
        if sources:
            s["source_sha256"] = sources
        if rule in ("freeze", "golden") and self.model_code(w["model"]):  # the stages that run the class
            s["model_code"] = self.model_code(w["model"])["sha256"]
        return s

    def source_digests(self, rule: str, w: dict) -> dict[str, str]:
        """{label: sha256} of the job's inputs that no rule makes (checkpoints, ONNX sources, calibration, samples)."""
        import os

        from . import fingerprint

        out = {}
        for label, p in self.inputs(rule, w).items():
            if not p.replace(os.sep, "/").startswith(paths.ROOT + "/") and os.path.exists(p):
                out[label] = fingerprint.sha256(p)
        return out

    # ------------------------------------------------------------------------------------------- target sets
    @property
    def validates_in_build(self) -> bool:
        """No GPU, here or in a Slurm pool, can run a plan: its validation (the variant's parity, the plan's header,
        execution not-run) follows from what the build made, so the build job writes it: one job (and one process)
        fewer per target set (benchmarks/README.md, issue 13). Where a GPU can run plans, validation is a job of
        its own on one, so a driver upgrade re-runs it and keeps the plans."""
        return not self.gpus

    def job_stage(self, stage: str) -> str:
        """The stage whose jobs do `stage`'s work: 'build' for 'validate' where the build job validates."""
        return "build" if stage == "validate" and self.validates_in_build else stage

    @property
    def set_job_stages(self) -> tuple[str, ...]:
        """The target-set stages that have jobs of their own: build, and validate unless the build job validates."""
        return tuple(dict.fromkeys(map(self.job_stage, paths.SET_STAGES)))

    def target_sets(self, stage: str) -> list[TargetSet]:
        """The target sets of the build or the validate stage's jobs (see TargetSet), from the plan jobs. Builds
        split per cc where the backend builds on a GPU; validations where there are GPUs to run plans on (each job
        holds one GPU of its cc, locally or in the cc's Slurm pool); none where the build job validates."""
        if stage == "validate" and self.validates_in_build:
            return []
        if stage not in self._sets:
            per_cc = self.backend.builds_on_gpu if stage == "build" else bool(self.gpus)
            ccs_of: dict[str, list[str]] = {}
            for j in self.jobs:
                ccs = ccs_of.setdefault(j["precision"], [])
                if j["cc"] not in ccs:
                    ccs.append(j["cc"])
            groups: dict[tuple, list[str]] = {}
            for precision, ccs in ccs_of.items():
                for part in [(cc,) for cc in ccs] if per_cc else [tuple(ccs)]:
                    groups.setdefault(part, []).append(precision)
            self._sets[stage] = [TargetSet(ccs, tuple(ps), per_cc) for ccs, ps in groups.items()]
        return self._sets[stage]

    def job_logs(self, plan: dict) -> dict[str, str]:
        """{stage: log} of the build and validation jobs of one plan {model, key, cc, precision}: the build's alone
        where the build job validates."""
        return {
            stage: paths.job_log(
                stage, {**plan, "targets": self.target_set(stage, precision=plan["precision"], cc=plan["cc"]).tag}
            )
            for stage in self.set_job_stages
        }

    def target_set(self, stage: str, *, precision: str, cc: str | None = None, targets: str | None = None) -> TargetSet:
        """The stage's set holding (precision, cc), or the set of a job's `targets` tag."""
        for ts in self.target_sets(stage):
            if precision in ts.precisions and (cc in ts.ccs if targets is None else ts.tag == targets):
                return ts
        raise KeyError(f"no {stage} job covers {precision} at {cc or targets}")

    # ------------------------------------------------------------------------------------------- failures
    def chain(
        self,
        model: str,
        precision: str | None = None,
        key: str | None = None,
        cc: str | None = None,
        variant: str | None = None,
    ) -> list[tuple[str, dict]]:
        """The jobs (rule, wildcards) one result depends on, upstream first: a plan's validation, or the ONNX parity
        of one variant (`variant`: export | sim | <precision>)."""
        out = []
        rule = self.freeze_rule(model)
        if rule:
            out.append((rule, {"model": model, **({"fmt": self.frozen_format(model)} if rule == "freeze" else {})}))
        out.append(("export", {"model": model}))
        variant = variant or precision
        if variant != "export":
            out.append(("simplify", {"model": model}))
        out.append(("golden", {"model": model}))
        if variant in ("export", "sim"):
            out.append(("parity", {"model": model, "variant": variant}))
        elif variant:  # a precision variant's parity is its precision job's
            out.append(("precision", {"model": model, "precision": variant, "variant": variant}))
        if key:  # the jobs' wildcards, and the cc of the one plan asked about (their main output)
            plan = {"model": model, "key": key, "precision": precision, "cc": cc}
            out += [
                (stage, {**plan, "targets": self.target_set(stage, precision=precision, cc=cc).tag})
                for stage in self.set_job_stages
            ]
        return out

    @functools.cached_property
    def failures(self) -> dict[tuple, dict]:
        """{(rule, wildcards as sorted items): record} of the recorded failures that still apply."""
        from . import failures

        found, judged = {}, {}
        for rec in failures.load_all(self.workdir):
            rule, w = rec["rule"], rec["wildcards"]
            if rule not in _SETTINGS or w.get("model") not in self.cfg["models"]:
                continue
            try:
                inputs = self.inputs(rule, w)
                settings = self.settings(rule, w)
            except (KeyError, TypeError, ValueError):  # wildcards this config no longer has (a dropped precision)
                continue
            # and nothing upstream is made again in this run (failures.outdated), else it is retried now
            if failures.still_applies(rec, inputs, settings) and not self._remade_upstream(rule, w, judged):
                found[_job_id(rule, w)] = rec
        return found

    def _remade_upstream(self, rule: str, w: dict, judged: dict) -> str | None:
        """Why an input of a job is made again in this run (see failures.outdated), or None: each job that makes one
        of its inputs, and theirs, judged once (`judged`: by job) from the records beside their artifacts."""
        from . import failures

        producers = judged.get(("producers", w["model"]))
        if producers is None:
            producers = judged[("producers", w["model"])] = self._producers(w["model"])
        for p in self.inputs(rule, w).values():
            if p not in producers:  # a source, or a file no job of this model makes
                continue
            up_rule, up_w = producers[p]
            job = _job_id(up_rule, up_w)
            if job not in judged:
                judged[job] = None  # a chain has no cycle; this only stops a second walk
                main = paths.frozen_io(up_w["model"]) if up_rule == "freeze_tf" else paths.main_output(up_rule, up_w)
                inputs = self.inputs(up_rule, up_w)
                judged[job] = failures.outdated(
                    paths.provenance(main), paths.stage_of(up_rule), inputs, self.settings(up_rule, up_w)
                ) or self._remade_upstream(up_rule, up_w, judged)
            if judged[job]:
                return judged[job]
        return None

    def _producers(self, model: str) -> dict[str, tuple[str, dict]]:
        """{artifact: (rule, wildcards) of the job that makes it} of one model's chains (results with no record of
        their own, parity and validation, left out: no recorded job reads them but the precision job's parity)."""
        out: dict[str, tuple[str, dict]] = {}
        variants = ("export", "sim", *model_settings(self.cfg, model)["precisions"])
        chains = [self.chain(model, variant=v) for v in variants]
        chains += [self.chain(**j) for j in self.jobs if j["model"] == model]
        for rule, w in (job for chain in chains for job in chain):
            if rule in ("parity", "validate"):
                continue
            out.setdefault(paths.main_output(rule, w), (rule, w))
            if rule == "precision":
                out.setdefault(paths.parity(model, w["precision"]), (rule, w))
            if rule == "freeze_tf":
                out.setdefault(paths.frozen_io(model), (rule, w))
        return out

    def failure_of(self, **target) -> dict | None:
        """The first recorded failure along a result's chain (see `chain`), or None."""
        for rule, w in self.chain(**target):
            rec = self.failures.get(_job_id(rule, w))
            if rec:
                return rec
        return None

    @functools.cached_property
    def failed(self) -> list[dict]:
        """Plan jobs that end failed: {model, key, cc, precision, stage, error, log, record}."""
        from .failures import first_line

        out = []
        for j in self.jobs:
            rec = self.failure_of(**j)
            if rec:
                out.append(
                    {
                        **j,
                        "stage": rec["rule"],
                        "error": rec.get("error", ""),
                        "reason": first_line(rec),
                        "log": rec.get("log"),
                        "record": rec["path"],
                    }
                )
        return out

    @property
    def buildable(self) -> list[dict]:
        """Plan jobs to run: every job minus the failed ones."""
        failed = [{k: j[k] for k in ("model", "key", "cc", "precision")} for j in self.failed]
        return [j for j in self.jobs if j not in failed]

    def report_inputs(self) -> list[str]:
        """What the report reads: each buildable plan's validation, each model's parity and ONNX provenance results
        whose chain did not fail, and the failure records that apply."""
        out = [paths.REPORT_SPEC] + [paths.validation(**j) for j in self.buildable]
        for model in self.cfg["models"]:
            if self.failure_of(model=model, variant="export") is None:
                out += [paths.parity(model, "export"), paths.provenance(paths.onnx(model))]
            if self.failure_of(model=model, variant="sim") is None:
                out += [paths.parity(model, "sim"), paths.provenance(paths.sim_onnx(model))]
            out += [
                paths.parity(model, p)
                for p in model_settings(self.cfg, model)["precisions"]
                if self.failure_of(model=model, variant=p) is None
            ]
        return out + sorted({rec["path"] for rec in self.failures.values()})

    # ------------------------------------------------------------------------------------------- damage
    def recorded_files(self, published: list[str] | None = None) -> list[str]:
        """The files of this config's chains that carry their own provenance record: every model's frozen model, ONNX
        variants, golden set and parity results; every plan and its validation; every deploy record and published
        Triton model config (`published`: `deployed()`, where the caller has read it already)."""
        out: dict[str, None] = {}
        for model in self.cfg["models"]:
            for variant in ("export", "sim", *model_settings(self.cfg, model)["precisions"]):
                out.update(dict.fromkeys(paths.main_output(rule, w) for rule, w in self.chain(model, variant=variant)))
                out[paths.parity(model, variant)] = None
        for j in self.jobs:
            out[paths.plan(**j)] = None
            out[paths.validation(**j)] = None
        return [*out, *self.deploy_outputs(), *(self.deployed() if published is None else published)]

    def damaged(self) -> list[dict]:
        """[{path, problem}] of the files on disk that fail their own record (provenance.intact: size, sha256; a stat
        each while nothing changed), the plans in a Triton model directory that are not the bytes its record lists,
        and the report's summary.json that does not parse or index.html that does not end as a page. Missing files
        are Snakemake's to re-make; files without a record (results made before 0.3.0) are not judged here (`verify`
        reports both)."""
        from . import fingerprint, provenance
        from .atomic import read_json

        found = []
        published = self.deployed()  # each deploy record read once
        with fingerprint.deferred():  # the content cache written once, however many verdicts are new
            for path in self.recorded_files(published):
                if os.path.exists(path) and (why := provenance.intact(path, need_record=False)):
                    found.append({"path": path, "problem": why})
            for config in published:
                if not os.path.exists(config):  # its directory went, its record stayed: the record goes too
                    found.append({"path": config, "problem": "missing, though its deploy record says published"})
                    continue
                side = paths.provenance(config)
                listed = ((read_json(side) or {}).get("facts") or {}).get("plans", []) if os.path.exists(side) else []
                for entry in listed:
                    file, digest = (entry.get("file"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
                    if not isinstance(file, str) or not isinstance(digest, str) or not _in_dir(file, config):
                        found.append({"path": config, "problem": f"its record lists {str(file)[:200]!r}: not its plan"})
                    elif why := provenance.listed_intact(file, digest, side):
                        found.append({"path": file, "problem": why})
            for page, judge in ((paths.REPORT_JSON, _summary_problem), (paths.REPORT_HTML, _page_problem)):
                if os.path.isfile(page) and (why := fingerprint.derived(page, "report-intact", judge)):
                    found.append({"path": page, "problem": why})  # no record: its shape is what can be judged
        return found

    def discard(self, damaged: list[str]) -> list[str]:
        """Remove damaged files with their records and everything made from them (the records' inputs say what), a
        Triton model directory whole, and the report: Snakemake, judging by dates, keeps a damaged file and never
        re-makes a missing one while what was made from it is there (measured), so this is what makes a run build
        them again. Only relative paths inside the real artifacts/ are removed (a record naming anything else is not
        obeyed). Returns the removed paths."""
        from . import signing
        from .atomic import read_json

        made_from: dict[str, list[str]] = {}  # input -> the artifacts whose records name it
        for side in sorted(paths_under(paths.ROOT, f"*{paths.SIDECAR_SUFFIX}")):
            for entry in (read_json(side) or {}).get("inputs", []):
                if isinstance(entry, dict) and "path" in entry:
                    made_from.setdefault(os.path.normpath(entry["path"]), []).append(paths.artifact_of_record(side))
        doomed: set[str] = set()

        def drop(path: str) -> None:
            path = os.path.normpath(path)
            if path in doomed:
                return
            doomed.update({path, paths.provenance(path), paths.intoto(path), signing.envelope_path(path)})
            if (model_dir := paths.triton_model_of(path)) is not None:  # a repository goes whole, and its record
                doomed.update(str(p) for p in Path(model_dir).rglob("*") if p.is_file())
                doomed.update(paths.deploy_record_files(model_dir))
            for child in made_from.get(path, []):
                drop(child)

        for path in damaged:
            drop(path)
        doomed.update({paths.REPORT_JSON, paths.REPORT_HTML, paths.OUTCOME})  # its inputs change: it must run again
        removed = []
        for path in sorted(doomed):
            if paths.deletable(path) and os.path.lexists(path):
                try:
                    os.unlink(path)
                except OSError:  # a read-only folder: the run cannot write there anyway
                    continue
                removed.append(path)
        return removed

    def clear_damage(self, *, may_remove) -> list[str]:
        """The workflow's start (the Snakefile): find damaged files (`damaged`) and, where `may_remove()` (a run that
        writes here, none in progress), remove them and what was made from them (`discard`), so this run makes them
        again. Returns the lines to print (none when nothing is damaged)."""
        found = self.damaged()
        if not found:
            return []
        lines = [f"engine factory: damaged: {d['path']}: {d['problem']}" for d in found]
        if not may_remove():
            return lines + [
                "engine factory: not removed here (a read-only call, or a run in progress): the next run removes and "
                "rebuilds them (or `python -m engine_factory verify --repair`)"
            ]
        removed = self.discard([d["path"] for d in found])
        return lines + [
            f"engine factory: removed {len(removed)} file(s): the damaged ones, their records, what was made from "
            "them and the report; this run makes them again"
        ]

    # ------------------------------------------------------------------------------------------- deploy
    @functools.cached_property
    def deploy_targets(self) -> dict[str, dict]:
        """{repository name: {model, precision, jobs}} of the Triton repositories to write (config deploy.triton):
        one per (model, precision) with at least one buildable plan; failed targets never reach one."""
        from .deploy.triton import deploy_precisions, policy, repository_name

        pol = policy(self.cfg)
        if not pol["enabled"]:
            return {}
        out = {}
        for model in self.cfg["models"]:
            for precision in deploy_precisions(pol, model_settings(self.cfg, model)["precisions"]):
                jobs = [self._served(j) for j in self.buildable if j["model"] == model and j["precision"] == precision]
                if jobs:
                    out[repository_name(pol, model, precision)] = {"model": model, "precision": precision, "jobs": jobs}
        return out

    @functools.cached_property
    def live_key(self) -> str | None:
        """The key Triton serves when it is not the one this host builds (artifacts/live.json: `promote`,
        `rollback`, the nightly's gate); None when no key was promoted or the live key is this one."""
        from .deploy.gate import read_live

        live = read_live(".")["live"]
        return live if live and live != self.key else None

    def _served(self, job: dict) -> dict:
        """The plan a repository serves for a build job: the live key's where a candidate is not (yet) promoted and
        the live key has that plan and its validation (a model or target added since has none: its new plan)."""
        if not self.live_key:
            return job
        live = {**job, "key": self.live_key}
        return live if os.path.exists(paths.plan(**live)) and os.path.exists(paths.validation(**live)) else job

    def deploy_outputs(self) -> list[str]:
        """The deploy jobs' records (artifacts/deploy/<name>.json): each says its repository published or withheld."""
        return [paths.deploy_record(name) for name in self.deploy_targets]

    def deployed(self, checkpoints=None) -> list[str]:
        """The config.pbtxt of each repository whose deploy record says published. With the workflow's `checkpoints`
        (rule all), a record not written yet has Snakemake run its deploy job first and then ask again."""
        from .atomic import read_json
        from .deploy.triton import PUBLISHED

        out = []
        for name in self.deploy_targets:
            record = checkpoints.deploy.get(repository=name).output.record if checkpoints else paths.deploy_record(name)
            if (read_json(record) or {}).get("status") == PUBLISHED:
                out.append(paths.triton_config(name))
        return out

    def deploy_target(self, repository: str) -> dict:
        if repository not in self.deploy_targets:
            raise FactoryError(
                f"no Triton repository '{repository}' is configured (deploy.triton; this host and "
                f"config deploy: {', '.join(self.deploy_targets) or 'none'})",
                key="deploy.triton",
            )
        return self.deploy_targets[repository]

    def write_report_spec(self, path: str = paths.REPORT_SPEC) -> None:
        """The report's settings as a file, rewritten only when they change: the report's command stays short at any
        zoo size, and a change of what it covers (a failure recorded or retried, a target added) re-runs it by the
        file's mtime, also after a report the failure handler wrote (which Snakemake holds no record of)."""
        import json

        from .atomic import read_json, write_json

        spec = json.loads(json.dumps(self.report_settings()))
        if read_json(path) != spec:
            try:
                write_json(path, spec)
            except OSError:  # a read-only artifacts folder (status there): the report cannot run anyway
                pass

    def report_settings(self) -> dict:
        return {
            "jobs": [{**j, "logs": self.job_logs(j)} for j in self.buildable],
            "skipped": self.skipped,
            "failed": self.failed,
            "backend": self.key,
            "models": {
                m: {
                    "framework": self.model(m)["framework"],
                    "precisions": model_settings(self.cfg, m)["precisions"],
                    "failed": [
                        {"stage": r["rule"], "reason": r.get("error", "")[:500], "log": r.get("log")}
                        for r in (self.failures.get(_job_id(rule, w)) for rule, w in self.chain(model=m))
                        if r
                    ],
                }
                for m in self.cfg["models"]
            },
        }


def _in_dir(file: str, config: str) -> bool:
    """A file a Triton config's record lists lies in that model directory (a record naming another is not obeyed)."""
    return os.path.normpath(file).startswith(os.path.dirname(os.path.normpath(config)) + os.sep)


def _summary_problem(full: str) -> str | None:
    import json

    try:
        with open(full, "rb") as f:
            ok = isinstance(json.load(f).get("plans"), list)
    except (OSError, ValueError, AttributeError) as e:
        return f"not the report's summary ({type(e).__name__}: emptied, halved or zeroed)"
    return None if ok else "not the report's summary (no plans)"


def _page_problem(full: str) -> str | None:
    with open(full, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - 256))
        tail = f.read()
    return None if b"</html>" in tail else "does not end as an HTML page (emptied, halved or zeroed)"


def read_only_call(args: list[str], flags) -> bool:
    """Snakemake's command line `args` run no job here: one of `flags` (ops/runs.py's READ_ONLY), or -n among short
    flags (-np)."""
    return any(a in flags or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a) for a in args)


def paths_under(root: str, pattern: str) -> list[str]:
    """Files matching `pattern` under root's model and Triton folders (not logs, caches, the report), no folder
    symlink followed."""
    out = []
    for top, dirs, files in os.walk(root):
        if top == root:
            dirs[:] = [d for d in dirs if d not in paths.OUTSIDE_CHAIN or d == "triton"]
        out += [os.path.join(top, f) for f in fnmatch.filter(files, pattern)]
    return out


def _job_id(rule: str, w: dict) -> tuple:
    """A job's identity: its rule and the wildcards that name it (not the cc or variant of the one result asked
    about: a target set's jobs cover several ccs, a parity job two variants)."""
    names = paths.job_wildcards(rule)
    return rule, tuple(sorted((k, v) for k, v in w.items() if k in names))


# --------------------------------------------------------------------------------------------- stage specs
def _set_ccs(f: Factory, stage: str, w: dict) -> tuple[str, ...]:
    return f.target_set(stage, precision=w["precision"], targets=w["targets"]).ccs


def _fw(f: Factory, w: dict):
    return f.framework(w["model"]), w["model"], f.model(w["model"])


def _freeze_inputs(f: Factory, w: dict) -> dict:
    fw, name, m = _fw(f, w)
    return fw.source_files(m)


def _export_inputs(f: Factory, w: dict) -> dict:
    fw, name, m = _fw(f, w)
    return fw.export_inputs(name, m)


def _golden_inputs(f: Factory, w: dict) -> dict:
    fw, name, m = _fw(f, w)
    return {**fw.reference_inputs(name, m), "samples": m.get("samples")}


_INPUTS = {
    "demo": lambda f, w: {},
    "freeze": _freeze_inputs,
    "freeze_tf": _freeze_inputs,
    "export": _export_inputs,
    "simplify": lambda f, w: {"onnx": paths.onnx(w["model"])},
    "precision": lambda f, w: {
        "onnx": paths.sim_onnx(w["model"]),
        "calibration": _calibration_file(f, w),
        "golden": paths.golden(w["model"]),
    },
    "golden": _golden_inputs,
    "parity": lambda f, w: {
        "export": paths.onnx(w["model"]),
        "sim": paths.sim_onnx(w["model"]),
        "golden": paths.golden(w["model"]),
    },
    # parity and golden: what the build job's validation reads where it validates; on every host, so that the
    # build jobs (inputs, settings) are the same on a host that has GPUs to run plans and one that has not
    "build": lambda f, w: {
        "onnx": paths.precision_onnx(w["model"], w["precision"]),
        "parity": paths.parity(w["model"], w["precision"]),
        "golden": paths.golden(w["model"]),
    },
    "validate": lambda f, w: {
        **{f"plan_sm{cc}": paths.plan(w["model"], w["key"], cc, w["precision"]) for cc in _set_ccs(f, "validate", w)},
        # where the plans must be signed to run, the job waits for (and checks) their envelopes
        **(
            {
                f"envelope_sm{cc}": signing.envelope_path(paths.plan(w["model"], w["key"], cc, w["precision"]))
                for cc in _set_ccs(f, "validate", w)
            }
            if _validation_trust(f)
            else {}
        ),
        "onnx": paths.precision_onnx(w["model"], w["precision"]),
        "parity": paths.parity(w["model"], w["precision"]),
        "golden": paths.golden(w["model"]),
    },
}


def _deploy_inputs(f: Factory, w: dict) -> dict:
    t = f.deploy_target(w["repository"])
    out = {"onnx": paths.precision_onnx(t["model"], t["precision"])}  # the plans' I/O: names, types, dims
    for j in t["jobs"]:
        out[f"plan_sm{j['cc']}"] = paths.plan(**j)
        out[f"validation_sm{j['cc']}"] = paths.validation(**j)
    return out


_INPUTS["deploy"] = _deploy_inputs


def _deploy_settings(f: Factory, w: dict) -> dict:
    from .deploy.triton import policy

    t = f.deploy_target(w["repository"])
    pol = {k: v for k, v in policy(f.cfg).items() if k not in ("enabled", "name", "precisions")}
    return {
        "repository": w["repository"],
        "model": t["model"],
        "precision": t["precision"],
        "key": ",".join(sorted({j["key"] for j in t["jobs"]})),  # the live key's, where it is served (live_key)
        "compute_capabilities": [paths.cc_dotted(j["cc"]) for j in t["jobs"]],
        "inputs": f.model(t["model"])["inputs"],
        "policy": pol,
        "portable": f.backend.spec.portable_across_cc(f.key),
        "triton_unloadable": f.backend.triton_unloadable,
    }


def _freeze_settings(f: Factory, w: dict) -> dict:
    fw, name, m = _fw(f, w)
    return {"framework": m["framework"], **fw.freeze_settings(name, m)}


def _export_settings(f: Factory, w: dict) -> dict:
    fw, name, m = _fw(f, w)
    return {
        "model": name,
        "framework": m["framework"],
        "source_format": fw.frozen_format(m) or "onnx",
        "inputs": m["inputs"],
        "outputs": m.get("outputs"),
        "opset": model_settings(f.cfg, name)["opset"],
        **({"cast_float64": True} if m.get("cast_float64") else {}),
        **fw.export_settings(name, m),
    }


def _golden_settings(f: Factory, w: dict) -> dict:
    fw, name, m = _fw(f, w)
    return {
        "model": name,
        "inputs": m["inputs"],
        "outputs": m.get("outputs"),
        "seed": model_settings(f.cfg, name)["golden_seed"],
        "device": f.cfg["golden_device"],
        "source": fw.reference_settings(m),
    }


def _calibration(f: Factory, w: dict):
    """The model's calibration setting where the precision is calibrated or AutoCast (fp16/bf16) checks ranges on
    it: a path (a job input), or a callable's setting ({callable, kwargs}: a job setting, with its package's code
    digest); else None (fp16/bf16 then take the golden inputs)."""
    return f.model(w["model"]).get("calibration") if w["precision"] != "fp32" else None


def _calibration_file(f: Factory, w: dict) -> str | None:
    """The calibration setting where it is a file or folder (a job input); a callable's is a setting instead."""
    calibration = _calibration(f, w)
    return calibration if isinstance(calibration, str) else None


def _precision_settings(f: Factory, w: dict) -> dict:
    from .modelcode import code_fingerprint, search_path

    ms = model_settings(f.cfg, w["model"])
    search = ms["precision_search"].get(w["precision"])
    calibration = _calibration(f, w)
    extra = {"search": search} if search else {}  # only when set: other variants keep their settings
    if isinstance(calibration, dict):  # the callable's code is a setting: editing it re-runs the calibrated jobs
        extra.update(
            calibration=calibration,
            calibration_code=code_fingerprint(
                calibration["callable"],
                search_path(f.cfg["python_path"]),
                model=w["model"],
                key=f"models.{w['model']}.calibration.callable",
            ),
        )
    return {
        "model": w["model"],
        "precision": w["precision"],
        "inputs": f.model(w["model"])["inputs"],
        "tolerance": ms["tolerances"][w["precision"]],
        **extra,
    }


def _parity_settings(f: Factory, w: dict) -> dict:
    return {"tolerance": model_settings(f.cfg, w["model"])["tolerances"]["fp32"]}


def _build_settings(f: Factory, w: dict) -> dict:
    b = f.backend
    ccs = _set_ccs(f, "build", w)
    timing_caches = None if b.timing_cache_unused else {cc: paths.timing_cache(w["key"], cc) for cc in ccs}
    return {
        "model": w["model"],
        "backend": b.name,
        "key": w["key"],
        "compute_capabilities": [paths.cc_dotted(cc) for cc in ccs],
        "precision": w["precision"],
        "inputs": f.model(w["model"])["inputs"],
        "build": model_settings(f.cfg, w["model"])["build"],
        "timing_caches": timing_caches,  # none for RTX
        **b.build_options(f.cfg),
        # for the validation where the build job validates (no GPU runs plans: no driver or CUDA version matters
        # to it); on every host, as its inputs (a tolerance change re-makes the variant, so its plans, anyway)
        "validation": _validation_settings(f, w),
    }


def _validation_settings(f: Factory, w: dict) -> dict:
    """What a plan's validation adds to its build's settings."""
    return {"version": f.backend.version, "tolerance": model_settings(f.cfg, w["model"])["tolerances"][w["precision"]]}


def _validation_trust(f: Factory) -> dict | None:
    """The public keys a validate job checks each plan's envelope against before deserializing it (the runtime's
    `trust`), where signing is on and public keys are configured (`signing.trusted_keys` or `signing.public_key`):
    a GPU node never needs the signing key, so with the private key alone validation does not check signatures."""
    s = signing.settings(f.cfg)
    trusted = list(s["trusted_keys"]) or ([s["public_key"]] if s["public_key"] else [])
    return {"trusted_keys": trusted, "revoked_keys": list(s["revoked_keys"])} if s["key"] and trusted else None


def _validate_settings(f: Factory, w: dict) -> dict:
    m = f.model(w["model"])
    trust = _validation_trust(f)
    return {
        **({"trust": trust} if trust else {}),
        "model": w["model"],
        "backend": f.backend.name,
        "key": w["key"],
        "version": f.backend.version,
        "compute_capabilities": [paths.cc_dotted(cc) for cc in _set_ccs(f, "validate", w)],
        "precision": w["precision"],
        "inputs": m["inputs"],
        "tolerance": _validation_settings(f, w)["tolerance"],
        # a driver or CUDA change keeps the plans but re-runs their validation
        "driver": f.host.get("driver_version"),
        "cuda": f.host.get("cuda_driver_version"),
    }


_SETTINGS = {
    "demo": lambda f, w: {},
    "freeze": _freeze_settings,
    "freeze_tf": _freeze_settings,
    "export": _export_settings,
    "simplify": lambda f, w: {
        "model": w["model"],
        "inputs": f.model(w["model"])["inputs"],
        "simplifier": model_settings(f.cfg, w["model"])["simplifier"],
    },
    "precision": _precision_settings,
    "golden": _golden_settings,
    "parity": _parity_settings,
    "build": _build_settings,
    "validate": _validate_settings,
    "deploy": _deploy_settings,
}


# --------------------------------------------------------------------------------------------- jobs' environment
def job_environment(cfg: dict, host: dict) -> dict[str, str]:
    """What the Snakefile hands its jobs through the environment:
    - facts read once at DAG time (same interpreter, venv and host): saves each job ~25 ms for git and tool
      versions and ~10-50 ms for the host probe (measured), and the workflow code digest of the failure records;
    - PATH with this interpreter first and PYTHONPATH with the checkout, the config's python_path (the zoo's model
      packages) and the user's own PYTHONPATH (kept): a rule's command is code to Snakemake, so a path in it would
      re-run every job when the checkout or the venv moves (measured: 381 jobs)."""
    import json
    import os
    import sys

    from . import failures
    from .host import PROBED_ENV
    from .modelcode import job_pythonpath
    from .provenance import GIT_ENV, TOOLS_ENV, git_commit, tool_versions

    return {
        PROBED_ENV: json.dumps(host),
        GIT_ENV: json.dumps(git_commit()),
        TOOLS_ENV: json.dumps(tool_versions()),
        failures.CODE_ENV: failures.workflow_code(),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": job_pythonpath(cfg["python_path"]),
    }


# --------------------------------------------------------------------------------------------- resolve
def resolve(cfg: dict, host: dict | None = None, *, workdir: str = ".") -> Factory:
    """probe -> targets -> backend -> key -> plan jobs, the one sequence the Snakefile and `check` both use."""
    from .backends import load_backend, resolve_backend
    from .host import backend_for_keys, probe_host
    from .targets import plan_jobs, target_gpus

    host = probe_host() if host is None else host
    gpus = target_gpus(cfg, host["gpus"])  # the Slurm pools' where configured, else the local GPUs
    backend = backend_for_keys(load_backend(resolve_backend(cfg["backend"], gpus)), host)
    key = backend.key_for(cfg)
    jobs, skipped = plan_jobs(cfg, backend=backend, key=key, gpus=gpus)
    return Factory(cfg=cfg, host=host, gpus=gpus, backend=backend, key=key, jobs=jobs, skipped=skipped, workdir=workdir)


# --------------------------------------------------------------------------------------------- a workflow directory
class Workflow:
    """A workflow directory opened once, as DVC's `Repo(root)` is: its config is loaded on opening (paths relative
    to the directory), and `with` it resolves the factory *inside* the directory, since the failure records, the
    content cache and artifacts/ are relative to it; the caller's working directory comes back on leaving.

        wf = open_workflow(directory, configfiles)   # a bad config is one line naming it; nothing resolved yet
        with wf as f:                                # f: the Factory, as the Snakefile resolves it
            ...
    """

    def __init__(self, directory: str = ".", configfiles=()):
        self.directory = directory
        self.cfg = load(configfiles or (), workdir=directory)
        self.factory: Factory | None = None
        self._cwd: list[str] = []

    def __enter__(self) -> Factory:
        self._cwd.append(os.getcwd())
        os.chdir(self.directory)
        try:
            if self.factory is None:
                self.factory = resolve(self.cfg)
                self.factory.failed  # noqa: B018 - the failure records are read here, inside the directory
                self.factory.deploy_targets  # noqa: B018 - so is live.json, for the plans Triton serves
        except BaseException:
            os.chdir(self._cwd.pop())
            raise
        return self.factory

    def __exit__(self, *exc) -> None:
        os.chdir(self._cwd.pop())

    def resolve(self) -> Factory:
        """The factory, resolved inside the directory (once), without staying there."""
        with self as f:
            return f


def open_workflow(directory: str = ".", configfiles=()) -> Workflow:
    """The one place a workflow directory is opened (its config loaded, its factory resolved inside it)."""
    return Workflow(directory, configfiles)
