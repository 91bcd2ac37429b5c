"""`python -m bench search|ingest|retrieval|index-sweep|plot [options]`: the benchmarks without the CLI.

Mirrors what `encaptio bench ...` will call; prints one JSON document on stdout (progress
goes to stderr) and, with --out, also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import set_quiet_environment


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    set_quiet_environment()
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    search = sub.add_parser("search")
    search.add_argument("--chunks", type=int, default=100_000)
    search.add_argument("--queries", type=int, default=200)
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--num-partitions", type=int)
    search.add_argument("--nprobes", type=int, default=None)
    search.add_argument("--refine-factor", type=int)
    search.add_argument("--ef", type=int)
    search.add_argument("--index-config", type=json.loads, help='e.g. \'{"type": "IVF_SQ", "num_partitions": 1000}\'')
    search.add_argument("--fresh-rows", type=int, default=10_000)
    search.add_argument("--rebuild", action="store_true")
    ingest = sub.add_parser("ingest")
    ingest.add_argument("--files", type=int, default=16)
    retrieval = sub.add_parser("retrieval")
    retrieval.add_argument("--rebuild", action="store_true")
    retrieval.add_argument("--spec", type=json.loads, help='CorpusSpec fields, e.g. \'{"organizations": 1}\'')
    sweep = sub.add_parser("index-sweep")
    sweep.add_argument("--chunks", type=int, default=100_000)
    sweep.add_argument("--configs", type=json.loads, required=True, help="JSON list of index configs")
    sweep.add_argument("--nprobes", type=json.loads, default=[10, 20, 40])
    sweep.add_argument("--refine-factors", type=json.loads, default=[None])
    sweep.add_argument("--efs", type=json.loads, default=[None])
    plot = sub.add_parser("plot", help="docs/img/search_latency.png from search result JSON files")
    plot.add_argument("results", nargs="+", type=Path)
    plot.add_argument("--output", type=Path, default=Path("docs/img/search_latency.png"))
    for command in (search, ingest, retrieval, sweep):
        command.add_argument("--json", action="store_true", help="accepted for parity with the CLI; output is JSON")
        command.add_argument("--data-dir", type=Path)
        command.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    result: Any
    if args.command == "search":
        from bench.search import run_search_bench

        result = run_search_bench(args.chunks, queries=args.queries, data_dir=args.data_dir, seed=args.seed,
                                  progress=_progress, num_partitions=args.num_partitions, nprobes=args.nprobes,
                                  refine_factor=args.refine_factor, ef=args.ef, index_config=args.index_config,
                                  fresh_rows=args.fresh_rows, rebuild=args.rebuild)
    elif args.command == "ingest":
        from bench.ingest import run_ingest_bench

        result = run_ingest_bench(files=args.files, data_dir=args.data_dir, progress=_progress)
    elif args.command == "retrieval":
        from bench.retrieval import run_retrieval_bench

        from bench.retrieval import DEFAULT_SPEC
        from encaptio_data.corpus import CorpusSpec

        spec = CorpusSpec(**(DEFAULT_SPEC | args.spec)) if args.spec else None
        result = run_retrieval_bench(data_dir=args.data_dir, progress=_progress, rebuild=args.rebuild, spec=spec)
    elif args.command == "index-sweep":
        from bench.index_sweep import run_index_sweep

        result = run_index_sweep(args.chunks, configs=args.configs, nprobes=tuple(args.nprobes),
                                 refine_factors=tuple(args.refine_factors), efs=tuple(args.efs),
                                 data_dir=args.data_dir, progress=_progress)
    else:
        from bench.plot import plot_search_latency

        print(plot_search_latency([json.loads(p.read_text()) for p in args.results], args.output))
        return 0
    text = json.dumps(result, indent=2, default=str)
    if getattr(args, "out", None):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
