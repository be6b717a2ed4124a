"""The ``dpir`` command line: one subcommand per workflow stage.

Each stage works on its own, outside Snakemake; the workflow rules call exactly these commands.
User errors print one line ``dpir: error: ...`` naming the file or key and the fix (exit 2).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from dpir.errors import DpirError

def config_files(given: list[str] | None) -> list[str]:
    """The config files a command reads, layered like Snakemake's ``--configfile``: the harness's
    default config first, then each ``--config`` file in order (later files win)."""
    from dpir.config import default_config_path

    default = default_config_path()
    files = [str(default)]
    for f in given or []:
        try:
            same = Path(f).resolve() == default.resolve()
        except OSError:
            same = False
        if not same:
            files.append(f)
    return files


def parse_set(items: list[str] | None) -> dict:
    """``--set a.b.c=VALUE`` items -> a nested override mapping (VALUE is read as YAML)."""
    from dpir.config import parse_yaml_text

    overrides: dict = {}
    for item in items or []:
        if "=" not in item:
            raise DpirError(f"--set expects KEY=VALUE (dots for nesting), got {item!r}")
        key, value = item.split("=", 1)
        parts = key.split(".")
        if not all(parts):
            raise DpirError(f"--set {item!r}: the key {key!r} has an empty part; write e.g. tasks.sr.seeds=[0]")
        node = overrides
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise DpirError(f"--set {item!r}: {p!r} was already set to a value, not a mapping")
            node = nxt
        node[parts[-1]] = parse_yaml_text(value, f"--set {item!r}: the value")
    return overrides


def _config(args):
    from dpir.config import load_config

    return load_config(config_files(args.config), parse_set(args.set))


def cmd_prepare(args):
    from dpir.data.prepare import prepare

    cfg = _config(args)
    man = prepare(cfg, args.task, args.dataset)
    print(f"prepared {args.task}/{args.dataset}: " + ", ".join(f"{k} {len(v['ids'])} images" for k, v in man["splits"].items()))
    if man["splits"].get("train", {}).get("ids"):
        from dpir.data.store import build_store

        # the training crops' source: decoded once here, memory-mapped by every training job
        print(f"patch store: {build_store(cfg, args.task, args.dataset, 'train')}")


def cmd_train(args):
    from dpir.train.launch import distributed_env, launch
    from dpir.train.loop import train_network

    if args.gpus is not None:
        argv = [a for a in sys.argv[1:]] if args.argv is None else list(args.argv)
        rc = launch(args.gpus, _without_gpus(argv))
        if rc:
            raise DpirError(f"the {args.gpus} training processes of `dpir train --gpus {args.gpus}` failed "
                            f"(exit status {rc}); their messages are above")
        return
    cfg = _config(args)
    rec = train_network(cfg, args.network, progress=not args.quiet)
    env = distributed_env()
    if env is not None and not env.main:
        return
    print(f"trained {args.network}: {rec['steps']} steps, final loss {rec['final_loss']:.4g}, {rec['seconds_this_run']:.0f} s")


def _without_gpus(argv: list[str]) -> list[str]:
    """``argv`` without ``--gpus N`` / ``--gpus=N`` (the processes torchrun starts train, not launch)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--gpus":
            skip = True
        elif not a.startswith("--gpus="):
            out.append(a)
    return out


def cmd_restore(args):
    from dpir.atomic import sigterm_raises_interrupt
    from dpir.restore import check_shard_count, merge_shards, parse_shard, restore_dataset

    if args.merge_shards is not None and args.shard is not None:
        raise DpirError("--shard and --merge-shards exclude each other: restore each shard with --shard K/N, "
                        "then merge them with --merge-shards N")
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.merge_shards is not None:
        check_shard_count(args.merge_shards)
    cfg = _config(args)
    # SIGTERM (a SLURM time limit, kill) unwinds like Ctrl-C: the finished images are kept for the next run
    with sigterm_raises_interrupt():
        if args.merge_shards is not None:
            rec = merge_shards(cfg, args.task, args.dataset, args.method, args.seed, args.merge_shards)
        else:
            rec = restore_dataset(cfg, args.task, args.dataset, args.method, args.seed, progress=not args.quiet,
                                  shard=shard)
    if rec.get("kind") == "outputs":
        from dpir.outputs import summary

        print(summary(rec))
        return
    spi = rec.get("seconds_per_image")
    print(f"restored {rec['n_images']} images with {args.method} (seed {args.seed}"
          + (f", shard {shard[0]}/{shard[1]}" if shard else "") + f"): NFE {rec['nfe']}, "
          + (f"{spi:.3f} s/image" if spi is not None else "no images in this shard"))


def cmd_score(args):
    from dpir.score import score_run

    cfg = _config(args)
    rec = score_run(cfg, args.task, args.dataset, args.method, args.seed)
    summary = ", ".join(f"{k} {v['mean']:.4f}" if v["available"] else f"{k} n/a" for k, v in rec["metrics"].items())
    print(f"scored {args.method} seed {args.seed}: {summary}")


def cmd_score_folder(args):
    from dpir.score_folder import format_table, score_folder

    rec = score_folder(args.pred, args.gt, args.preset, args.crop, args.out)
    print(format_table(rec, per_image=args.per_image))
    if args.out:
        print(f"wrote {args.out}")


def cmd_export(args):
    from dpir.export import export_network

    cfg = _config(args)
    written = export_network(cfg, args.network, args.layout, args.out)
    print(f"exported {args.network} ({args.layout} layout) to {written}")


def cmd_tables(args):
    from dpir.report.report import render_tables

    cfg = _config(args)
    for _, _, t in render_tables(cfg):
        print(f"## {t.title}\n\n{t.markdown()}")


def cmd_report(args):
    from dpir.report.report import render_report

    cfg = _config(args)
    print(f"wrote {render_report(cfg)}")


def cmd_ablations(args):
    from dpir.report.ablations import write_ablations_report

    cfg = _config(args)
    print(f"wrote {write_ablations_report(cfg)}")


def cmd_protocols(args):
    from dpir.report.protocols import write_protocols

    cfg = _config(args)
    out, md, data = write_protocols(cfg)
    print(f"wrote {out} and {md} ({len(data['tables'])} tables, {data['seconds']:.1f} s)")


def cmd_gaussian(args):
    from dpir.report.gaussian import write_gaussian

    cfg = _config(args)
    out, data = write_gaussian(cfg)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_name('pd_plane.png')} "
          f"({len(data['degradations'])} degradations, {data['seconds']:.1f} s)")


def cmd_tflops(args):
    from dpir.tflops import write_tflops

    cfg = _config(args)
    out = write_tflops(cfg, args.task, args.out or f"{cfg['out']}/cost", args.width, args.height)
    print(f"wrote {out}")


def cmd_fetch(args):
    from dpir import fetch

    if args.forget:
        if not args.names:
            raise DpirError("--forget needs the name(s) whose recorded hash to drop, e.g. "
                            "`dpir fetch --forget gopro` (see `dpir fetch --list`)")
        from dpir.fetch import registry

        for name in args.names:
            entry = registry.get(name)
            rec = fetch.forget(name)
            if rec is None:
                why = " (its sha256 is published in registry.json)" if entry.sha256 else ""
                print(f"{name}: no hash recorded in {registry.lock_path()}{why}; local stamp cleared")
            else:
                print(f"{name}: dropped the recorded sha256 {rec.get('sha256')} from {registry.lock_path()}; "
                      f"`dpir fetch --force {name}` downloads it anew, `dpir fetch {name}` records the file "
                      f"now at {entry.path}")
        if not args.force:
            return
    if args.list or not args.names:
        print(fetch.format_status_table(fetch.status()))
        return
    if args.stamp and len(args.names) != 1:
        raise DpirError("--stamp records one entry: `dpir fetch NAME --stamp FILE`")
    for name in args.names:
        path = fetch.fetch(name, force=args.force, progress=not args.quiet)
        print(f"{name}: {path}")
        if args.stamp:          # the workflow's fetch job: its output records what was verified, and where
            import json

            from dpir.atomic import atomic_write_text
            from dpir.fetch import registry

            entry = registry.get(name)
            atomic_write_text(args.stamp, json.dumps({"name": entry.name, "path": str(path),
                                                       "sha256": registry.expected(entry)[0]}, indent=2))


def cmd_import_official(args):
    from dpir.official import import_official

    cfg = _config(args)
    print(f"imported {args.network}: {import_official(cfg, args.network)}")


def cmd_list(args):
    from dpir.methods import METHODS
    from dpir.metrics import METRICS
    from dpir.nets import ARCHS
    from dpir.train import TRAINERS

    tables = {"methods": METHODS, "metrics": METRICS, "archs": ARCHS, "trainers": TRAINERS}
    for kind in [args.kind] if args.kind else tables:
        print(f"{kind}: {', '.join(sorted(tables[kind]))}")


def cmd_validate(args):
    cfg = _config(args)
    if args.print:
        print(json.dumps(cfg, indent=2))
    else:
        print(f"config OK: tasks {', '.join(cfg['tasks'])}; networks {', '.join(cfg['networks'])}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpir", description="dpir-bench: benchmark modular conditional diffusion "
                                "image restoration (DP-IR) against its baselines. Each subcommand is one stage.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        sp.add_argument("--config", "-c", action="append", help="config YAML layered over the default config "
                        "(repeatable; later files override earlier ones), as Snakemake's --configfile")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config value, e.g. --set tasks.sr.seeds=[0]")
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
        return sp

    sp = add("prepare", cmd_prepare, "prepare a dataset for a task (clean and degraded images + manifest)")
    sp.add_argument("--task", required=True)
    sp.add_argument("--dataset", required=True)
    sp = add("train", cmd_train, "train one network of the config (seeded, resumable, safetensors checkpoint)")
    sp.add_argument("--network", required=True)
    sp.add_argument("--gpus", type=int, metavar="N", help="train on N GPUs of this machine: runs `torchrun "
                    "--nproc_per_node N -m dpir train ...` (train.batch stays the global batch)")
    sp = add("restore", cmd_restore, "restore a prepared test set with one method and one seed")
    for a in ("--task", "--dataset", "--method"):
        sp.add_argument(a, required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--shard", metavar="K/N", help="restore only images K, K+N, K+2N, ... (0 <= K < N; results "
                    "do not change)")
    sp.add_argument("--merge-shards", type=int, metavar="N", help="merge the N finished shards (--shard 0/N .. "
                    "N-1/N) into the run folder")
    sp = add("score", cmd_score, "score one restored run with the task's metric presets -> results JSON")
    for a in ("--task", "--dataset", "--method"):
        sp.add_argument(a, required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp = sub.add_parser("score-folder", help="score a folder of restored images against a folder of targets "
                        "(no config): the metric presets' conventions, files paired by name",
                        description="score a folder of restored images against a folder of targets (no config): "
                        "the metric presets' conventions, files paired by name")
    sp.set_defaults(func=cmd_score_folder)
    sp.add_argument("--pred", required=True, metavar="DIR", help="the restored images")
    sp.add_argument("--gt", required=True, metavar="DIR", help="the targets, same file names (stems)")
    sp.add_argument("--preset", action="append", metavar="NAME", help="a metric preset (repeatable or "
                    "comma-separated; default psnr_rgb,ssim_rgb; see `dpir list metrics`)")
    sp.add_argument("--crop", type=int, default=0, metavar="N", help="pixels cut from each border before scoring")
    sp.add_argument("--per-image", action="store_true", help="print a row per image, not only the mean")
    sp.add_argument("--out", metavar="FILE.json", help="write the scores (per image, means, conventions) as JSON")
    add("tables", cmd_tables, "render the tables (Markdown + CSV) from the results JSON files")
    sp = add("tflops", cmd_tflops, "TFLOPs per image at a fixed output size (per-step cost x NFE + once-per-image)")
    sp.add_argument("--task", required=True)
    sp.add_argument("--width", type=int, default=1280)
    sp.add_argument("--height", type=int, default=720)
    sp.add_argument("--out", help="output folder (default <out>/cost)")
    add("report", cmd_report, "render tables, figures and report.md from the results JSON files")
    add("ablations", cmd_ablations, "render the paper's ablation tables (config `ablations.tables`) into "
        "<out>/ablations.md and <out>/ablations/")
    add("protocols", cmd_protocols, "re-score the restored images of the main tables under each published "
        "protocol (SR Y/RGB and crops, the official SyntheticBurst score, LPIPS alex/vgg) -> <out>/protocols/")
    add("gaussian", cmd_gaussian, "the exact Gaussian world (config `gaussian:`): exact D, P and the "
        "perception-distortion bound of DP-IR's samplers with oracle parts -> <out>/gaussian/")
    sp = add("fetch", cmd_fetch, "download and verify paper-scale datasets and weights (or --list their state)")
    sp.add_argument("names", nargs="*")
    sp.add_argument("--list", action="store_true")
    sp.add_argument("--force", action="store_true", help="download anew; the file is replaced only once verified")
    sp.add_argument("--forget", action="store_true", help="drop the recorded hash of NAMES (registry.lock.json) "
                    "and their local verified stamp; with --force, then download anew")
    sp.add_argument("--stamp", metavar="FILE", help="after verifying NAME, write FILE recording its name, path and "
                    "sha256 (the output of the workflow's fetch job)")
    sp = add("import-official", cmd_import_official, "load a network's official checkpoint (config `official:`, "
             "a fetch name or a path) and save it where `dpir train` would (no training)")
    sp.add_argument("--network", required=True)
    sp = add("export", cmd_export, "write a network's weights as a checkpoint other code loads (BasicSR "
             "params_ema, a raw state dict, or the old ESRGAN key names)")
    sp.add_argument("--network", required=True)
    sp.add_argument("--layout", required=True, choices=["basicsr", "raw", "esrgan_old"])
    sp.add_argument("--out", metavar="FILE", help="the checkpoint file to write (default: under <out>/exports/)")
    sp = add("list", cmd_list, "list registered method kinds, metrics, architectures and trainers")
    sp.add_argument("kind", nargs="?", choices=["methods", "metrics", "archs", "trainers"])
    from dpir import plan

    plan.add_parser(sub)     # dpir plan: FLOPs, disk, memory and GPU-hours of every job, before anything runs
    sp = add("validate", cmd_validate, "validate the config against the schema (names the offending key)")
    sp.add_argument("--print", action="store_true", help="print the resolved config with defaults")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv            # what `dpir train --gpus N` hands on to its processes (None: sys.argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    default_show = warnings.showwarning

    def show_warning(message, category, filename, lineno, file=None, line=None):
        from dpir.data.images import SkippedFile

        if issubclass(category, SkippedFile):
            print(f"dpir: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)
    warnings.showwarning = show_warning
    warnings.filterwarnings("ignore", message=r".*torch\.meshgrid.*")
    try:
        args.func(args)
    except DpirError as e:
        if args.verbose and e.__cause__ is not None:   # a user's code raised (kind python): its traceback
            import traceback

            traceback.print_exception(e.__cause__, file=sys.stderr)
        print(f"dpir: error: {one_line(str(e), args.verbose)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dpir: interrupted; finished results are untouched; a restore's finished images are kept in its "
              "<run>.partial/ folder and the next run with the same settings resumes from them", file=sys.stderr)
        return 130
    return 0


def one_line(message: str, verbose: bool = False) -> str:
    """A user error on one line; the detail of a multi-line message (YAML context, torch's weights-only
    text) is shown with ``dpir -v``."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else message
    if verbose:
        return " | ".join(lines)
    return f"{lines[0]} (run `dpir -v ...` for the details)"


if __name__ == "__main__":
    sys.exit(main())
